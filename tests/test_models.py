import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jbatch import config as config_lib
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
