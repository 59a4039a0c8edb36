"""Sharpness: the largest Hessian eigenvalue, by power iteration on Hessian-vector products.

The Hessian is never formed: H v = grad(grad(L) . v) by reverse-over-reverse
differentiation (the models' convolution and max-pool define their own
reverse-mode gradients, which forward mode cannot differentiate). Power
iteration converges to the eigenvalue of largest magnitude; near a minimum
that is the top (positive) one. The value returned is the Rayleigh quotient
v.Hv at the last iterate.
"""

import jax
import jax.numpy as jnp
from jax import lax

from jbatch.probes.per_example import sq_norm


def _vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def top_eigenvalue(loss, params, key, iters=20):
  """(eigenvalue, relative change over the last iteration) of the Hessian of loss at params."""
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

  def body(_, carry):
    v, eig, _ = carry
    hv = hvp(v)
    new = _vdot(v, hv)
    return normalized(hv), new, jnp.abs(new - eig) / jnp.maximum(jnp.abs(new), 1e-30)

  _, eig, change = lax.fori_loop(0, iters, body, (normalized(v), jnp.float32(0), jnp.float32(1)))
  return eig, change
