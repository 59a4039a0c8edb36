"""Every convolution formulation equals lax.conv_general_dilated, forward and backward."""

import jax
import numpy as np
import pytest
from flax import nnx

from jbatch.models import conv, registry
from jbatch import config as config_lib

CASES = [  # in, out, kernel, stride, padding, dilation, groups: the cases the models use
    (1, 8, 3, 1, "VALID", 1, 1),      # cnn
    (3, 8, 3, 2, 1, 1, 1),            # strided stems
    (8, 8, 3, 2, 1, 1, 8),            # MobileNetV2 depthwise, strided
    (8, 8, 3, 1, 1, 1, 8),            # depthwise
    (8, 16, 1, 1, 0, 1, 1),           # pointwise
    (4, 8, 1, 2, 0, 1, 1),            # ResNet shortcut
    (3, 8, 7, 2, 3, 1, 1),            # ResNet ImageNet stem
    (4, 6, 3, 1, 2, 2, 1),            # dilation
    (4, 6, 3, 1, ((0, 1), (2, 0)), 1, 1),  # uneven padding
]


def _pair(impl, case, seed=0):
  cin, cout, k, s, pad, dil, groups = case
  make = lambda i: conv.Conv(cin, cout, k, s, padding=pad, dilation=dil, groups=groups,
                             impl=i, rngs=nnx.Rngs(seed))
  return make("xla"), make(impl)


@pytest.mark.parametrize("case", CASES)
def test_im2col_and_taps_equal_xla(case):
  ref, alt = _pair("im2col", case)
  assert alt.impl == ("taps" if case[-1] > 1 else "im2col")
  x = jax.random.normal(jax.random.key(1), (3, 11, 10, case[0]))
  np.testing.assert_allclose(alt(x), ref(x), rtol=1e-5, atol=1e-5)

  def grads(layer):
    g, rest = nnx.split(layer)
    f = lambda params, x: (nnx.merge(g, params)(x) ** 2).sum()
    return jax.grad(f, argnums=(0, 1))(rest, x)

  (gp_ref, gx_ref), (gp_alt, gx_alt) = grads(ref), grads(alt)
  np.testing.assert_allclose(gx_alt, gx_ref, rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(gp_alt), jax.tree.leaves(gp_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_rule_and_record_fields():
  assert conv.resolve("auto", "cpu") == "im2col" and conv.resolve("auto", "gpu") == "xla"
  assert conv.resolve("xla", "cpu") == "xla"
  c = config_lib.base()
  c.model = "cnn"
  fields = registry.conv_fields(c, "cpu")
  assert fields["conv_impl"] == "im2col" and "auto on cpu" in fields["conv_impl_reason"]
  c.model = "mlp"
  assert registry.conv_fields(c, "cpu") == {}


def test_models_agree_across_formulations():
  c = config_lib.base()
  c.model = "mobilenet_v2"
  c.mobilenet_v2.width = 0.25
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  out = {}
  for impl in ("xla", "im2col"):
    c.conv_impl = impl
    out[impl] = registry.build(c, (32, 32, 3), 10, seed=0)(x, train=False)
  np.testing.assert_allclose(out["im2col"], out["xla"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[8]])
def test_chunked_im2col_equals_xla(case, chunk):
  """5 images in chunks of 1 (five loop steps) or 2 (two and a remainder of one); one
  chunk of the whole batch is the layer's own path at these sizes (test above)."""
  ref, alt = _pair("im2col", case)
  x = jax.random.normal(jax.random.key(1), (5, 11, 10, case[0]))
  kernel = alt.kernel[...]
  geometry = alt.geometry(x, kernel)[:3] + (chunk,)
  conv_ref = lambda x, k: jax.lax.conv_general_dilated(
      x, k, ref.strides, ref.padding, rhs_dilation=ref.dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  conv_alt = lambda x, k: conv.im2col_conv(x, k, geometry)
  y = conv_ref(x, kernel)
  np.testing.assert_allclose(conv_alt(x, kernel), y, rtol=1e-5, atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), y.shape)
  got = jax.vjp(conv_alt, x, kernel)[1](ct)
  want = jax.vjp(conv_ref, x, kernel)[1](ct)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_chunk_size_follows_column_bytes(monkeypatch):
  layer = conv.Conv(32, 64, 3, impl="im2col", rngs=nnx.Rngs(0))
  x = jax.numpy.zeros((128, 26, 26, 32))
  # Columns of one image: 24 * 24 * 3 * 3 * 32 floats = 663,552 bytes -> 4 images in 3 MiB.
  assert layer.geometry(x, layer.kernel[...])[3] == 4
  monkeypatch.setattr(conv, "CHUNK_BYTES", 10 ** 9)
  assert layer.geometry(x, layer.kernel[...])[3] == 128


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 9, 7, 3)])
def test_max_pool_gradient_goes_to_the_first_maximum(shape):
  """Forward and gradient equal nnx.max_pool's (reduce_window), ties and a ragged edge included."""
  from jbatch.models.layers import max_pool
  # Values on a coarse grid: most windows hold ties.
  x = jax.numpy.round(jax.random.normal(jax.random.key(0), shape))
  ref = lambda x: nnx.max_pool(x, (2, 2), (2, 2))
  y = ref(x)
  np.testing.assert_array_equal(max_pool(x, 2), y)
  ct = jax.random.normal(jax.random.key(1), y.shape)
  np.testing.assert_array_equal(jax.vjp(lambda x: max_pool(x, 2), x)[1](ct)[0],
                                jax.vjp(ref, x)[1](ct)[0])


@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize("stride,dilation,padding", [
    (1, 1, 1), (2, 1, 1), (2, 1, ((0, 1), (1, 0))), (1, 2, 2), (3, 1, 0)])
def test_depthwise_equals_xla(stride, dilation, padding, chunk):
  """Strides that do and do not divide the padded size, dilation, uneven padding; three
  images in chunks of 1 or 2 and a remainder (one whole chunk: the layer test above)."""
  layer = conv.Conv(6, 6, 3, stride, padding=padding, dilation=dilation, groups=6,
                    impl="im2col", rngs=nnx.Rngs(0))
  assert layer.impl == "taps"
  x = jax.random.normal(jax.random.key(1), (3, 11, 10, 6))
  kernel = layer.kernel[...]
  geometry = layer.geometry(x, kernel)[:3] + (chunk,)
  conv_ref = lambda x, k: jax.lax.conv_general_dilated(
      x, k, layer.strides, layer.padding, rhs_dilation=layer.dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
  conv_alt = lambda x, k: conv.depthwise_conv(x, k, geometry)
  y = conv_ref(x, kernel)
  np.testing.assert_allclose(conv_alt(x, kernel), y, rtol=1e-5, atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), y.shape)
  for a, b in zip(jax.vjp(conv_alt, x, kernel)[1](ct), jax.vjp(conv_ref, x, kernel)[1](ct)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
