"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, appendix A.1).

|G|^2 and tr(Sigma) are estimated without bias from the squared norms of mean
gradients over two batch sizes, b_small < b_big:
  |G|^2    ~ (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
  tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1 / b_small - 1 / b_big)
Two sources of the pair:
  per-example  b_small = 1 (the per-example norms), b_big = the probe batch;
  groups       the batch split into g groups: b_small = B / g, each group's
               mean gradient vs their mean. On a mesh of several devices the
               groups are the devices, through jax.shard_map: each device's
               own gradient against the all-reduced one, as data-parallel
               training has them anyway.
Each estimate is noisy; B_simple over training is the ratio of the two
smoothed (exponential moving average) series, as McCandlish et al. do.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jbatch.probes.per_example import sq_norm


def two_batch(small_sq, big_sq, b_small, b_big):
  """(|G|^2, tr(Sigma)) estimates from mean-gradient squared norms at two batch sizes."""
  g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
  trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
  return g2, trace


def from_per_example(sq_norms, grad_sum):
  """(|G|^2, tr(Sigma)) from per-example squared norms and the summed gradient."""
  n = sq_norms.shape[0]
  return two_batch(jnp.mean(sq_norms), sq_norm(grad_sum) / n ** 2, 1, n)


def group_norms(mean_grad, params, x, y, groups):
  """(mean over groups of |g_group|^2, |mean of the g_group|^2), groups one after another.

  mean_grad(params, x, y) is the gradient of the mean loss over x.
  """
  n = x.shape[0]
  xs = x.reshape(groups, n // groups, *x.shape[1:])
  ys = y.reshape(groups, n // groups, *y.shape[1:])

  def one(carry, xy):
    g = mean_grad(params, *xy)
    small, total = carry
    return (small + sq_norm(g), jax.tree.map(jnp.add, total, g)), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  (small, total), _ = lax.scan(one, (jnp.float32(0), zeros), (xs, ys))
  return small / groups, sq_norm(total) / groups ** 2


def device_norms(mean_grad, mesh):
  """jit-able (params, x, y) -> the same pair with one group per device of `mesh`."""

  def local(params, x, y):
    # Marked as varying, the parameters' gradient stays this device's own
    # instead of arriving summed over the devices.
    g = mean_grad(lax.pcast(params, "data", to="varying"), x, y)
    small = lax.pmean(sq_norm(g), "data")
    return small, sq_norm(lax.pmean(g, "data"))

  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                       out_specs=(P(), P()))


def smoothed_b_simple(g2, trace, decay=0.9):
  """B_simple at each point of a series: EMA(tr Sigma) / EMA(|G|^2) (McCandlish et al.
  A.1). Both EMAs start at 0 with the same decay, so their bias corrections cancel in the
  ratio and none is applied. A ratio whose |G|^2 average is not positive is NaN: the
  gradient is below the noise there."""
  out, a, b = [], 0.0, 0.0
  for g, t in zip(g2, trace):
    a, b = decay * a + (1 - decay) * t, decay * b + (1 - decay) * g
    out.append(float(a) / float(b) if b > 0 else float("nan"))
  return out


def below_noise(value):
  """Whether a B_simple estimate is not a number one can plot: |G|^2 estimated at or below
  zero (late in training the unbiased estimate dips under 0), or none at all."""
  return value is None or not np.isfinite(value) or value <= 0


def b_simple(g2, trace):
  """B_simple from the means of two series of estimates; negative (or inf) where the mean
  |G|^2 estimate is not positive: below_noise says so."""
  g = float(np.mean(g2))
  return float(np.mean(trace)) / g if g else float("inf")
