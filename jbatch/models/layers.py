"""Building blocks shared by the convolutional models, laid out as torchvision lays them.

Padding is explicit (kernel // 2 on each side) rather than "SAME", so strided
convolutions line up with PyTorch's and weights copied across give the same
outputs.
"""

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import normalization

from jbatch.models.conv import Conv
from jbatch.models.initializers import lecun_normal
from jbatch.models import tape as tape_lib


class ConvBN(nnx.Module):
  """Convolution without bias, BatchNorm, optional activation."""

  def __init__(self, in_ch, out_ch, kernel=3, stride=1, *, groups=1, act=jax.nn.relu,
               bn_momentum=0.9, conv_impl="xla", rngs):
    self.conv = Conv(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups,
                     use_bias=False, impl=conv_impl, rngs=rngs)
    self.norm = BatchNorm(out_ch, momentum=bn_momentum, rngs=rngs)
    self.act = act

  def __call__(self, x, train=False):
    x = self.norm(self.conv(x), use_running_average=not train)
    return self.act(x) if self.act is not None else x


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x, size=2):
  """size x size max-pool with stride size (VALID: a ragged edge is dropped).

  Forward: a reshape and a max. Backward: the gradient goes to the first
  maximum of each window in row-major order, as reduce_window's
  select-and-scatter (nnx.max_pool) and PyTorch route it, written as one
  elementwise pass: on a CPU select-and-scatter costs 5-7x more, and the
  reshape-max's own gradient (split between ties) 1.7x more.
  """
  return _windows(x, size).max(axis=(2, 4))


def _windows(x, size):
  n, h, w, c = x.shape
  h, w = h // size * size, w // size * size
  return x[:, :h, :w, :].reshape(n, h // size, size, w // size, size, c)


def _max_pool_fwd(x, size):
  y = max_pool(x, size)
  return y, (x, y)


def _max_pool_bwd(size, residuals, g):
  x, y = residuals
  windows = _windows(x, size)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for i in range(size):
    row = []
    for j in range(size):
      first = (windows[:, :, i, :, j, :] == y) & ~taken
      taken = taken | first
      row.append(jnp.where(first, g, 0))
    rows.append(jnp.stack(row, 3))
  n, hp, _, wp, _, c = windows.shape
  dx = jnp.stack(rows, 2).reshape(n, hp * size, wp * size, c)
  ragged = ((0, 0), (0, x.shape[1] - hp * size), (0, x.shape[2] - wp * size), (0, 0))
  return (jnp.pad(dx, ragged),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def global_avg_pool(x):
  return x.mean(axis=(1, 2))


class Dense(nnx.Linear):
  """nnx.Linear that reports to a recording tape (models/tape.py); otherwise the same."""

  def __init__(self, in_features, out_features, **kwargs):
    kwargs.setdefault("kernel_init", lecun_normal)  # nnx.Linear's, drawn flat: fewer compiles
    super().__init__(in_features, out_features, **kwargs)

  def __call__(self, x):
    y = super().__call__(x)
    tape = tape_lib.current()
    if tape is not None:
      y = tape.record("dense", y, {"bias": self.bias is not None}, {"x": x},
                      self.kernel.size + (0 if self.bias is None else self.bias.size))
    return y


class BatchNorm(nnx.BatchNorm):
  """nnx.BatchNorm that reports to a recording tape; per-example gradients need it in
  evaluation mode (in training mode one example's gradient depends on the others)."""

  def over_pieces(self, pieces):
    """Training mode over one batch held as several (rows, features) arrays (models/mlp.py):
    the statistics of all their rows, each piece normalized by them, the running averages
    updated once; what __call__ gives their concatenation, up to the order of float sums
    (flax's formulas: float32 statistics, variance as E[x^2] - E[x]^2, clipped at 0)."""
    n = sum(p.shape[0] for p in pieces)
    stats = [p.astype(jnp.promote_types(p.dtype, jnp.float32)) for p in pieces]
    mean = sum(p.sum(0) for p in stats) / n
    var = jnp.maximum(0.0, sum(jnp.square(p).sum(0) for p in stats) / n - jnp.square(mean))
    m = self.momentum
    self.mean[...] = jax.lax.stop_gradient(m * self.mean[...] + (1 - m) * mean)
    self.var[...] = jax.lax.stop_gradient(m * self.var[...] + (1 - m) * var)
    scale = self.scale[...] if self.scale is not None else None
    bias = self.bias[...] if self.bias is not None else None
    out = []
    for p in pieces:
      p, mu, v, sc, b = self.promote_dtype((p, mean, var, scale, bias), dtype=self.dtype)
      out.append(normalization._normalize(p, mu, v, sc, b, (0,), (1,), self.dtype, self.epsilon))
    return out

  def __call__(self, x, use_running_average=None):
    y = super().__call__(x, use_running_average=use_running_average)
    tape = tape_lib.current()
    if tape is not None:
      if not use_running_average:
        raise ValueError("per-example gradients are taken with BatchNorm in evaluation mode")
      xhat = (x - self.mean[...]) * jax.lax.rsqrt(self.var[...] + self.epsilon)
      sizes = [v.size for v in (self.scale, self.bias) if v is not None]
      y = tape.record("batchnorm", y, {"scale": self.scale is not None,
                                       "bias": self.bias is not None},
                      {"xhat": xhat}, sum(sizes))
    return y
