"""The convolution every jbatch model uses, in the formulation that is fastest where it runs.

Formulations (all NHWC input, HWIO kernel, the same parameters as nnx.Conv):
  xla     lax.conv_general_dilated.
  im2col  the kh*kw shifted (strided, dilated) slices of the padded input
          concatenated on channels, then one matrix product; a 1x1
          convolution is the matrix product alone. Run over chunks of the
          batch sized to stay in cache, with its own backward pass.
  taps    depthwise only (groups == in == out channels): the sum over the
          kh*kw taps of a shifted slice times that tap's per-channel weights,
          with its own backward pass over chunks.
Why: on a CPU, XLA lowers a convolution to a generic kernel that is 3-10x
slower than these alone and about 50x slower inside a lax.scan (a fused
epoch), while slices, concatenation and dots are fast in both
(scripts/bench_conv_cpu.py measures it side by side with PyTorch). On a GPU
cuDNN's convolution stays the default. `resolve` is the rule; `impl` may
also be forced through the model config (conv_impl).
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
from jax import lax
from flax import nnx

from jbatch.models.initializers import lecun_normal
from jbatch.models import tape as tape_lib

IMPLS = ("auto", "xla", "im2col")
# im2col works on chunks of the batch whose columns take about this much memory: a
# chunk's columns stay in the CPU's caches between being written and multiplied
# (conv 32->64 of the MNIST CNN at batch 128, forward + backward: 95 ms unchunked,
# 60 ms in chunks of 4 images = 2.6 MB; scripts/bench_conv_cpu.py).
CHUNK_BYTES = 3 * 2 ** 20
CPU_REASON = ("im2col for dense convolutions, taps for depthwise ones, over cache-sized "
              "chunks of the batch: XLA's CPU convolution is 3-10x slower, about 50x inside "
              "a fused epoch (scripts/bench_conv_cpu.py)")
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
    self.kernel = nnx.Param(lecun_normal(rngs.params(),
                                         (kh, kw, in_features // groups, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.strides, self.dilation, self.groups = _pairs(strides), _pairs(dilation), groups
    if padding == "VALID":
      padding = 0
    self.padding = tuple(_pairs(p) for p in _pairs(padding))
    depthwise = groups == in_features == out_features and groups > 1
    if impl == "im2col" and groups > 1:
      impl = "taps" if depthwise else "xla"  # grouped but not depthwise: no model needs it
    self.impl = impl
    self.dtype = None  # the computation's dtype (models/registry.set_precision)

  def __call__(self, x):
    kernel = self.kernel[...]
    if self.dtype is not None:
      x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if self.impl == "xla":
      y = lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                   rhs_dilation=self.dilation,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   feature_group_count=self.groups)
    elif self.impl == "taps":
      y = depthwise_conv(x, kernel, self.geometry(x, kernel))
    else:
      y = im2col_conv(x, kernel, self.geometry(x, kernel))
    if self.bias is not None:
      y = y + self.bias[...].astype(y.dtype)
    tape = tape_lib.current()
    if tape is not None:
      y = tape.record("conv", y, dict(
          kernel_shape=kernel.shape, strides=self.strides, dilation=self.dilation,
          groups=self.groups, bias=self.bias is not None, padding=self.padding),
          {"x": x}, kernel.size + (0 if self.bias is None else self.bias.size))
    return y

  def geometry(self, x, kernel):
    """(strides, padding, dilation, images per chunk) for im2col_conv and depthwise_conv."""
    padded = (x.shape[1] + sum(self.padding[0]), x.shape[2] + sum(self.padding[1]))
    ho, wo = (out_size(*a) for a in zip(padded, kernel.shape[:2], self.strides, self.dilation))
    # The kh*kw slices of one image (the columns of im2col, the taps of a depthwise one).
    tap_bytes = ho * wo * kernel.shape[0] * kernel.shape[1] * x.shape[-1] * x.dtype.itemsize
    chunk = images_per_chunk(x.shape[0], tap_bytes, kernel.shape[:2], self.strides)
    return self.strides, self.padding, self.dilation, chunk


def images_per_chunk(n, slice_bytes, kernel_hw, strides):
  """Images of a batch of n whose tap slices (slice_bytes per image) fit in CHUNK_BYTES;
  all n for a 1x1 stride-1 kernel, whose only slice is the input itself."""
  if tuple(kernel_hw) == (1, 1) and tuple(strides) == (1, 1):
    return n
  return min(n, max(1, CHUNK_BYTES // slice_bytes))


@contextlib.contextmanager
def unchunked():
  """Convolutions, and the MLP's chunked hidden layers (mlp.py asks chunking()), traced
  inside this context run over the whole batch at once. For XLA's cost analysis: it
  counts a loop body once, so a chunked layer's FLOPs and bytes would be undercounted by
  its number of chunks."""
  global CHUNK_BYTES
  saved, CHUNK_BYTES = CHUNK_BYTES, 2 ** 62
  try:
    yield
  finally:
    CHUNK_BYTES = saved


def chunking():
  """False inside unchunked()."""
  return CHUNK_BYTES < 2 ** 62


def map_chunks(fn, chunk, *arrays):
  """fn over chunks of `chunk` images of the arrays (lax.map) and the remainder, concatenated."""
  if chunk >= arrays[0].shape[0]:
    return fn(*arrays)  # no loop to compile
  split = [_chunks(a, chunk) for a in arrays]
  out = _unchunk(lax.map(lambda chunks: fn(*chunks), tuple(s[0] for s in split)))
  if not split[0][1].shape[0]:
    return out
  return jnp.concatenate([out, fn(*(s[1] for s in split))])


def _cols(x, kernel_hw, geometry):
  """The im2col matrix of x: (n, out_h, out_w, kh * kw * channels)."""
  strides, padding, dilation, _ = geometry
  tap_slices = taps(jnp.pad(x, ((0, 0), *padding, (0, 0))), kernel_hw, strides, dilation)
  return (tap_slices[0][1] if len(tap_slices) == 1
          else jnp.concatenate([t for _, t in tap_slices], -1))


def _dense(x, kernel, geometry):
  return jnp.dot(_cols(x, kernel.shape[:2], geometry), kernel.reshape(-1, kernel.shape[-1]))


def _chunks(a, chunk):
  """a split on its first axis into (n // chunk, chunk, ...) and the remainder."""
  whole = a.shape[0] // chunk * chunk
  return a[:whole].reshape(-1, chunk, *a.shape[1:]), a[whole:]


def _unchunk(a):
  return a.reshape(-1, *a.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def im2col_conv(x, kernel, geometry):
  """im2col convolution over chunks of the batch (geometry[3] images each, lax.map).

  A chunk's columns are sized to stay in the CPU's caches, and the backward
  pass is one loop over the same chunks that rebuilds each chunk's columns
  for the kernel gradient and folds the column gradient back (col2im) for the
  input gradient: no batch-sized column matrix is ever kept.
  """
  return map_chunks(lambda xc: _dense(xc, kernel, geometry), geometry[3], x)


def _im2col_fwd(x, kernel, geometry):
  return im2col_conv(x, kernel, geometry), (x, kernel)


def _im2col_bwd(geometry, residuals, g):
  x, kernel = residuals
  matrix = kernel.reshape(-1, kernel.shape[-1])

  def chunk_grads(xc, gc):
    cols, col2im = jax.vjp(lambda a: _cols(a, kernel.shape[:2], geometry), xc)
    dmatrix = cols.reshape(-1, cols.shape[-1]).T @ gc.reshape(-1, gc.shape[-1])
    return col2im(gc @ matrix.T)[0], dmatrix.reshape(kernel.shape)

  return _chunked_grads(chunk_grads, x, g, geometry[3], kernel)


def _chunked_grads(chunk_grads, x, g, chunk, kernel):
  """(dx, dkernel) from chunk_grads(x chunk, g chunk) -> (dx chunk, dkernel of the chunk),
  in one loop over the chunks and the remainder."""
  if chunk >= x.shape[0]:
    return chunk_grads(x, g)

  def body(dkernel, xg):
    dx, dk = chunk_grads(*xg)
    return dkernel + dk, dx

  (xs, x_rest), (gs, g_rest) = _chunks(x, chunk), _chunks(g, chunk)
  dkernel, dx = lax.scan(body, jnp.zeros_like(kernel), (xs, gs))
  dx = _unchunk(dx)
  if x_rest.shape[0]:
    dx_rest, dk = chunk_grads(x_rest, g_rest)
    dx, dkernel = jnp.concatenate([dx, dx_rest]), dkernel + dk
  return dx, dkernel


im2col_conv.defvjp(_im2col_fwd, _im2col_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x, kernel, geometry):
  """Depthwise convolution (kernel kh, kw, 1, C) as a sum over taps of shifted slices
  times that tap's per-channel weights: one elementwise pass each way."""
  strides, padding, dilation, _ = geometry
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  return sum(t * kernel[i, j, 0] for (i, j), t in taps(x, kernel.shape[:2], strides, dilation))


def _depthwise_fwd(x, kernel, geometry):
  return depthwise_conv(x, kernel, geometry), (x, kernel)


def _depthwise_bwd(geometry, residuals, g):
  """Per chunk of the batch: the kernel gradient, per tap the sum of slice * g; the
  input gradient, the taps run backwards over g dilated by the stride and padded, in
  one pass. Whole-batch, XLA writes out every tap's slice of the input for the
  kernel gradient (1.2 s of a 3.6 s MobileNetV2 step on a CPU)."""
  strides, padding, dilation, chunk = geometry
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  (dh, dw), (top, _), (left, _) = dilation, *padding

  def chunk_grads(xc, gc):
    xp = jnp.pad(xc, ((0, 0), *padding, (0, 0)))
    # One reduction over the stacked products: per tap, XLA makes each a library call
    # on a materialized slice (9 calls per chunk).
    dkernel = jnp.stack([t * gc for _, t in taps(xp, (kh, kw), strides, dilation)]).sum((1, 2, 3))
    hp, wp = xp.shape[1:3]
    spread = [(0, 0, 0)]
    for size, k, s, d, out in zip((hp, wp), (kh, kw), strides, dilation, gc.shape[1:3]):
      spread.append((d * (k - 1), size - (out - 1) * s - 1, s - 1))
    gd = lax.pad(gc, jnp.zeros((), gc.dtype), spread + [(0, 0, 0)])
    dxp = sum(gd[:, dh * (kh - 1 - i):, dw * (kw - 1 - j):][:, :hp, :wp] * kernel[i, j, 0]
              for i in range(kh) for j in range(kw))
    return dxp[:, top:top + xc.shape[1], left:left + xc.shape[2]], dkernel.reshape(kernel.shape)

  return _chunked_grads(chunk_grads, x, g, chunk, kernel)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


def taps(x, kernel_hw, strides, dilation):
  """[((i, j), the slice of the padded input x that kernel tap (i, j) multiplies)]."""
  kh, kw = kernel_hw
  (sh, sw), (dh, dw) = strides, dilation
  n, h, w, c = x.shape
  ho, wo = out_size(h, kh, sh, dh), out_size(w, kw, sw, dw)
  out = []
  for i in range(kh):
    for j in range(kw):
      start = (0, i * dh, j * dw, 0)
      limit = (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c)
      out.append(((i, j), lax.slice(x, start, limit, (1, sh, sw, 1))))
  return out


def out_size(padded, kernel, stride, dilation):
  """Output length of a convolution along one axis of a padded input."""
  return (padded - dilation * (kernel - 1) - 1) // stride + 1
