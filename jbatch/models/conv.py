"""The convolution every jbatch model uses, in the formulation that is fastest where it runs.

Formulations (all NHWC input, HWIO kernel, the same parameters as nnx.Conv):
  xla     lax.conv_general_dilated.
  im2col  the kh*kw shifted (strided, dilated) slices of the padded input
          concatenated on channels, then one matrix product; a 1x1
          convolution is the matrix product alone.
  taps    depthwise only (groups == in == out channels): the sum over the
          kh*kw taps of a shifted slice times that tap's per-channel weights.
Why: on a CPU, XLA lowers a convolution to a generic kernel that is 2-3x
slower than PyTorch's alone and more than 10x slower inside a lax.scan (a
fused epoch), while slices, concatenation and dots are fast in both
(scripts/bench_conv_cpu.py measures all of it side by side). On a GPU
cuDNN's convolution stays the default. `resolve` is the rule; `impl` may
also be forced through the model config (conv_impl).
"""

import jax.numpy as jnp
from jax import lax
from flax import nnx

from jbatch.probes import tape as tape_lib

IMPLS = ("auto", "xla", "im2col")
CPU_REASON = ("im2col for dense convolutions, taps for depthwise ones: XLA's CPU "
              "convolution is several times slower, more inside a fused epoch "
              "(scripts/bench_conv_cpu.py)")
GPU_REASON = "XLA's convolution (cuDNN)"


def resolve(impl, platform):
  """The formulation for a platform: auto -> im2col (taps for depthwise) on CPU, else xla."""
  if impl != "auto":
    return impl
  return "im2col" if platform == "cpu" else "xla"


def _pairs(value):
  return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class Conv(nnx.Module):

  def __init__(self, in_features, out_features, kernel_size, strides=1, *, padding=0,
               dilation=1, groups=1, use_bias=True, impl="xla", rngs):
    """padding: 'VALID', an int for every side, or ((top, bottom), (left, right))."""
    kh, kw = _pairs(kernel_size)
    if in_features % groups or out_features % groups:
      raise ValueError(f"groups={groups} must divide {in_features} and {out_features}")
    init = nnx.initializers.lecun_normal()  # nnx.Conv's default, so models keep their init
    self.kernel = nnx.Param(init(rngs.params(), (kh, kw, in_features // groups, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.strides, self.dilation, self.groups = _pairs(strides), _pairs(dilation), groups
    if padding == "VALID":
      padding = 0
    self.padding = tuple(_pairs(p) for p in _pairs(padding))
    depthwise = groups == in_features == out_features and groups > 1
    if impl == "im2col" and groups > 1:
      impl = "taps" if depthwise else "xla"  # grouped but not depthwise: no model needs it
    self.impl = impl

  def __call__(self, x):
    kernel = self.kernel[...]
    if self.impl == "xla":
      y = lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                   rhs_dilation=self.dilation,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=self.groups)
    else:
      tap_slices = taps(self.pad(x), kernel.shape[:2], self.strides, self.dilation)
      kh, kw, cin, cout = kernel.shape
      if self.impl == "taps":
        y = sum(t * kernel[i, j, 0] for (i, j), t in tap_slices)
      else:
        cols = (tap_slices[0][1] if len(tap_slices) == 1
                else jnp.concatenate([t for _, t in tap_slices], -1))
        y = jnp.dot(cols, kernel.reshape(kh * kw * cin, cout))
    if self.bias is not None:
      y = y + self.bias[...]
    tape = tape_lib.current()
    if tape is not None:
      y = tape.record("conv", y, dict(
          kernel_shape=kernel.shape, strides=self.strides, dilation=self.dilation,
          groups=self.groups, bias=self.bias is not None, padding=self.padding),
          {"x": x}, kernel.size + (0 if self.bias is None else self.bias.size))
    return y

  def pad(self, x):
    return jnp.pad(x, ((0, 0), *self.padding, (0, 0)))


def taps(x, kernel_hw, strides, dilation):
  """[((i, j), the slice of the padded input x that kernel tap (i, j) multiplies)]."""
  kh, kw = kernel_hw
  (sh, sw), (dh, dw) = strides, dilation
  n, h, w, c = x.shape
  ho = (h - dh * (kh - 1) - 1) // sh + 1
  wo = (w - dw * (kw - 1) - 1) // sw + 1
  out = []
  for i in range(kh):
    for j in range(kw):
      start = (0, i * dh, j * dw, 0)
      limit = (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c)
      out.append(((i, j), lax.slice(x, start, limit, (1, sh, sw, 1))))
  return out
