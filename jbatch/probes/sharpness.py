"""Sharpness: the largest Hessian eigenvalue, by power iteration on Hessian-vector products.

The Hessian is never formed: H v = grad(grad(L) . v) by reverse-over-reverse
differentiation (the models' convolution and max-pool define their own
reverse-mode gradients, which forward mode cannot differentiate). Power
iteration converges to the eigenvalue of largest magnitude; near a minimum
that is the top (positive) one. It stops when the Rayleigh quotient v.Hv changes
by less than `tol` (relative) from one iteration to the next, or after `iters`;
the caller learns which.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jbatch.probes.per_example import sq_norm


def _vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def top_eigenvalue(loss, params, key, iters=20, tol=0.0):
  """(eigenvalue, relative change over the last iteration, iterations used) of the Hessian
  of loss at params; converged when the change is at most tol (tol 0: run all iters)."""
  grad = jax.grad(loss)

  def hvp(v):
    return jax.grad(lambda p: _vdot(grad(p), v))(params)

  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  v = jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype)
                                   for k, x in zip(keys, leaves)])

  def normalized(t):
    scale = lax.rsqrt(sq_norm(t))
    return jax.tree.map(lambda x: x * scale, t)

  def running(carry):
    i, _, _, change = carry
    return (i < iters) & ((i < 2) | (change > tol))

  def body(carry):
    i, v, eig, _ = carry
    hv = hvp(v)
    new = _vdot(v, hv)
    return i + 1, normalized(hv), new, jnp.abs(new - eig) / jnp.maximum(jnp.abs(new), 1e-30)

  i, _, eig, change = lax.while_loop(
      running, body, (jnp.int32(0), normalized(v), jnp.float32(0), jnp.float32(1)))
  return eig, change, i
