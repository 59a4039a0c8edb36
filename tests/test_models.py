import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jbatch import config as config_lib, cpu_memory
from jbatch.errors import UserError
from jbatch.models import registry
from jbatch.models.initializers import lecun_normal
from jbatch.models.layers import Dense
from jbatch.models.mobilenet_v2 import MobileNetV2, make_divisible
from jbatch.models.resnet import ResNet18
from jbatch.models.vgg import VGG


def test_published_parameter_counts():
  # torchvision: mobilenet_v2() 3,504,872; resnet18() 11,689,512.
  # Shapes only (nnx.eval_shape): no weights are drawn.
  count = lambda make: registry.count_params(nnx.eval_shape(make))
  assert count(lambda: MobileNetV2(1000, variant="imagenet", rngs=nnx.Rngs(0))) == 3_504_872
  assert count(lambda: ResNet18(1000, variant="imagenet", rngs=nnx.Rngs(0))) == 11_689_512
  # VGG-16's 13 convolutions: 14,714,688 (Keras VGG16 without its top); + 512*10+10.
  assert count(lambda: VGG((32, 32, 3), 10, depth=16, rngs=nnx.Rngs(0))) == 14_719_818


def test_mlp_of_seed004_counts_by_hand():
  c = config_lib.base()
  model = registry.build(c, (32,), 10, seed=0)
  # 32*64+64 + 5*(64*64+64) + BN scale and bias 2*64 + 64*10+10
  assert registry.count_params(model) == 2112 + 5 * 4160 + 128 + 650


def test_output_shapes():
  c = config_lib.base()
  c.vgg.width = 0.125
  for name, shape in (("cnn", (28, 28, 1)), ("mobilenet_v2", (32, 32, 3)), ("resnet18", (32, 32, 3)),
                      ("vgg", (28, 28, 1)), ("vgg", (32, 32, 3))):
    c.model = name
    graphdef, state = nnx.split(nnx.eval_shape(lambda: registry.build(c, shape, 10, seed=0)))
    out = jax.eval_shape(lambda s: nnx.merge(graphdef, s)(jnp.zeros((2, *shape)), train=False),
                         state)
    assert out.shape == (2, 10)


def test_width_multiplier_rounds_like_torchvision():
  assert make_divisible(32 * 0.5) == 16
  assert make_divisible(24 * 0.35) == 8
  assert make_divisible(1280 * 1.4) == 1792


def test_unknown_model_and_wrong_input_are_user_errors():
  c = config_lib.base()
  c.model = "vgg99"
  with pytest.raises(UserError, match="unknown model 'vgg99'"):
    registry.build(c, (32,), 10, seed=0)
  c.model = "mobilenet_v2"
  with pytest.raises(UserError, match="RGB"):
    registry.build(c, (32,), 10, seed=0)


@pytest.mark.parametrize("shape", [(3, 3, 8, 16), (3, 3, 1, 32), (1, 1, 24, 144), (64, 10),
                                   (1000, 7)])
def test_flat_initializer_draws_what_lecun_normal_draws(shape):
  """Bit for bit, for sizes at, below and above a power of two."""
  for seed in range(2):
    key = jax.random.key(seed)
    ours, flax_default = lecun_normal(key, shape), nnx.initializers.lecun_normal()(key, shape)
    assert ours.shape == shape
    assert jnp.array_equal(ours, flax_default)


def test_models_keep_flax_default_initial_weights():
  reference = nnx.Linear(20, 5, rngs=nnx.Rngs(3))
  assert jnp.array_equal(Dense(20, 5, rngs=nnx.Rngs(3)).kernel[...], reference.kernel[...])


def test_a_chunked_mlp_step_gives_the_unchunked_gradients_and_batch_statistics():
  """On a CPU the MLP's hidden layers run over cache-sized chunks of a large training
  batch (mlp.py), and its activations stay in pieces of whole chunks; BatchNorm still
  sees the whole batch, so loss, logits, gradients and running statistics are the
  unchunked ones up to float32 summation order."""
  import numpy as np
  from jbatch.train.step import make_loss
  from jbatch.workloads.builtin import CLASSIFIER
  c = config_lib.base()
  cpu = registry.build(c, (32,), 10, seed=0, platform="cpu")
  assert cpu.chunk == registry.MLP_CPU_CHUNK and cpu.piece_rows * 64 * 4 <= cpu_memory.HEAP_BYTES
  assert registry.build(c, (32,), 10, seed=0, platform="gpu").chunk == 0
  x = jax.random.normal(jax.random.key(1), (4 * 50 + 3, 32))  # 4 chunks of 50, 3 rows left
  y = jax.random.randint(jax.random.key(2), (x.shape[0],), 0, 10)
  out = {}
  # (chunk, piece_rows): unchunked; chunked in one piece; in 2 pieces of 2 chunks;
  # in 3 pieces of 1, 1 and 2 chunks; 203 rows are under 4 chunks of 100: in 4 half-chunks
  for chunk, piece_rows, loops in ((0, 0, 0), (50, 0, 1), (50, 100, 2), (50, 70, 3),
                                   (100, 0, 1)):
    model = registry.build(c, (32,), 10, seed=0, platform="cpu")
    model.chunk, model.piece_rows = chunk, piece_rows
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = make_loss(graphdef, CLASSIFIER)  # the train step's own loss
    (value, (metrics, stats)), grads = jax.value_and_grad(loss, has_aux=True)(
        params, rest, x, y, True)
    logits = nnx.merge(graphdef, params, rest, copy=True)(x, train=True)
    out[chunk, piece_rows] = (value, [logits, metrics["loss"], metrics["acc"]],
                              jax.tree.leaves(grads), jax.tree.leaves(stats))
    text = jax.jit(lambda p: loss(p, rest, x, y, True)[0]).lower(params).as_text()
    assert text.count("stablehlo.while") == loops  # each piece's chunks are a loop
  plain = out[0, 0]
  for key in [(50, 0), (50, 100), (50, 70), (100, 0)]:
    np.testing.assert_allclose(out[key][0], plain[0], rtol=1e-6)
    for a, b in zip(sum(out[key][1:], []), sum(plain[1:], [])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_chunk_rule_counted_by_hand():
  """mlp.chunks: whole chunks from four of them up, half-chunks from four half-chunks up,
  k = round(n / c) chunks of n // k rows; what the benchmark's count of the FLOPs a
  chunked step runs reads too."""
  from jbatch.models.mlp import chunks
  assert chunks(135_844, 8192) == (17, 7990)  # 16.58 chunks -> 17 of 7,990 rows, 14 left
  assert chunks(32_768, 8192) == (4, 8192)
  assert chunks(32_767, 8192) == (8, 4095)  # under 4 chunks: half-chunks of 4,096
  assert chunks(20_000, 8192) == (5, 4000) and chunks(16_384, 8192) == (4, 4096)
  assert chunks(16_383, 8192) is None and chunks(10_000, 8192) is None
  assert chunks(203, 100) == (4, 50) and chunks(10 ** 6, 0) is None


def test_the_blocked_weight_gradient_is_the_plain_one():
  """On a CPU a dense layer of MIN_ROWS rows or more takes its weight gradient as a sum
  over blocks of ROWS rows (cpu_matmul.py): the same gradients as lax.dot_general's, in
  float32 and in bfloat16 (summed in float32 either way), and only there."""
  import numpy as np
  from jax import lax
  from jbatch.models import cpu_matmul
  from jbatch.models.layers import Dense
  n = cpu_matmul.MIN_ROWS + 3 * cpu_matmul.ROWS + 5  # whole blocks and 5 rows past them
  x = jax.random.normal(jax.random.key(0), (n, 48))
  w = jax.random.normal(jax.random.key(1), (48, 64))
  g = jax.random.normal(jax.random.key(2), (n, 64))
  dims = (((1,), (0,)), ((), ()))
  for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
    xd, wd = x.astype(dtype), w.astype(dtype)
    ours = jax.vjp(lambda a, b: cpu_matmul.dot_general(a, b, dims), xd, wd)
    plain = jax.vjp(lambda a, b: lax.dot_general(a, b, dims), xd, wd)
    np.testing.assert_allclose(np.float32(ours[0]), np.float32(plain[0]), rtol=tol, atol=tol)
    for a, b in zip(ours[1](g.astype(dtype)), plain[1](g.astype(dtype))):
      assert a.dtype == b.dtype == dtype and a.shape == b.shape
      np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=tol, atol=tol * n ** 0.5)
  text = jax.jit(jax.grad(lambda b: cpu_matmul.dot_general(x, b, dims).sum())).lower(w).as_text()
  assert "optimization_barrier" in text  # the blocked form, not the plain product
  small = jax.jit(jax.grad(lambda b: cpu_matmul.dot_general(x[:100], b, dims).sum()))
  assert "optimization_barrier" not in small.lower(w).as_text()
  c = config_lib.base()
  dense = lambda platform: [m for _, m in nnx.iter_modules(
      registry.build(c, (32,), 10, seed=0, platform=platform)) if isinstance(m, Dense)]
  assert all(m.dot_general is cpu_matmul.dot_general for m in dense("cpu"))
  assert all(m.dot_general is lax.dot_general for m in dense("gpu"))


def test_a_chunked_mlp_step_is_counted_whole():
  """XLA's cost analysis counts a loop body once: the FLOPs of a chunked step are those of
  the unchunked one (timing.step_cost traces it unchunked), not a chunk's."""
  from jbatch.bench import timing
  from jbatch.train.step import make_loss
  from jbatch.workloads.builtin import CLASSIFIER
  c = config_lib.base()
  x = jnp.zeros((4 * 50, 32))
  y = jnp.zeros((x.shape[0],), jnp.int32)
  flops = {}
  for chunk in (0, 50):
    model = registry.build(c, (32,), 10, seed=0, platform="cpu")
    model.chunk = chunk
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = make_loss(graphdef, CLASSIFIER)
    step = lambda p, x, y: jax.grad(lambda p: loss(p, rest, x, y, True)[0])(p)
    flops[chunk] = timing.step_flops(step, params, x, y)
    looped = timing.cost(jax.jit(step).lower(params, x, y))["flops"]
    assert (looped < flops[chunk] / 2) == bool(chunk)  # the loop, counted once by XLA
  assert flops[50] == flops[0] > 0
