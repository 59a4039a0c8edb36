"""Per-example gradient norms, two ways, with the summed (batch) gradient beside them.

  vmap  jax.vmap(jax.grad) of one example's loss, in chunks of `chunk`
        examples so that at most chunk copies of the gradient exist at once.
  fast  one backward pass of the summed loss with respect to a zero
        perturbation of every layer's output (models/tape.py) gives each
        example's output gradient delta; per layer:
          Dense      |a_i|^2 |delta_i|^2 (+ |delta_i|^2 for the bias)
          Conv       the im2col columns A_i (positions x taps*channels):
                     |A_i^T delta_i|^2, as a Gram product
                     sum(A_i A_i^T * delta_i delta_i^T) where positions are
                     fewer than (K * C) / (K + C), else formed per example
          depthwise  per tap, the sum over positions of x_t * delta
          BatchNorm  (evaluation mode) sum over positions of delta * x_hat, delta
        and the batch gradient comes out of the same backward pass.
Both use BatchNorm in evaluation mode: in training mode an example's
gradient depends on the rest of its batch and is not per-example.

Each returns {"sq_norms": (n,), "grad_sum": params-shaped sum over examples}.
"""

import jax
import jax.numpy as jnp
from jax import lax
from flax import nnx

from jbatch.errors import UserError
from jbatch.models.conv import images_per_chunk, map_chunks, taps
from jbatch.models import tape as tape_lib
from jbatch.train.step import predict_losses

METHODS = ("fast", "vmap")


def sq_norm(tree):
  return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))


def eval_losses(graphdef, workload, params, model_state, x, y):
  """The workload's per-example losses with BatchNorm in evaluation mode (what every probe
  differentiates)."""
  model = nnx.merge(graphdef, params, model_state, copy=True)
  return predict_losses(workload, model, x, y, False)[1]


def check_chunk(batch_size, chunk):
  if chunk <= 0 or batch_size % chunk:
    raise UserError(f"per-example chunk {chunk} does not divide the probe batch {batch_size}; "
                    "pick a chunk that divides it")


def make_vmap(graphdef, workload, chunk):
  """(params, model_state, x, y) -> {sq_norms, grad_sum}; chunk must divide len(x)."""

  def one_grad(params, model_state, x, y):
    one = lambda p: eval_losses(graphdef, workload, p, model_state, x[None], y[None])[0]
    return jax.grad(one)(params)

  def norms(params, model_state, x, y):
    n = x.shape[0]
    check_chunk(n, chunk)

    def per_chunk(xy):
      grads = jax.vmap(one_grad, in_axes=(None, None, 0, 0))(params, model_state, *xy)
      sq = jax.vmap(sq_norm)(grads)
      return sq, jax.tree.map(lambda g: g.sum(0), grads)

    xs = x.reshape(n // chunk, chunk, *x.shape[1:])
    ys = y.reshape(n // chunk, chunk, *y.shape[1:])
    sq, sums = lax.map(per_chunk, (xs, ys))
    return {"sq_norms": sq.reshape(n), "grad_sum": jax.tree.map(lambda g: g.sum(0), sums)}

  return norms


def make_fast(graphdef, workload):
  """(params, model_state, x, y) -> {sq_norms, grad_sum} without per-example gradients."""

  def norms(params, model_state, x, y):
    # A shape pass finds the layers and their output shapes; the tape is Python
    # state filled in while tracing, and only its static part is read after.
    shape_tape = tape_lib.Tape()
    with tape_lib.recording(shape_tape):
      jax.eval_shape(lambda p: eval_losses(graphdef, workload, p, model_state, x, y), params)
    covered = sum(e.num_params for e in shape_tape.entries)
    total = sum(leaf.size for leaf in jax.tree.leaves(params))
    if covered != total:
      raise UserError(f"the fast per-example path covers {covered} of {total} parameters "
                      "(a layer it does not know); use probes.method=vmap")

    def summed_loss(p, perturbations):
      tape = tape_lib.Tape(perturbations)
      with tape_lib.recording(tape):
        losses = eval_losses(graphdef, workload, p, model_state, x, y)
      return losses.sum(), [e.arrays for e in tape.entries]

    zeros = [jnp.zeros(o.shape, o.dtype) for o in shape_tape.outputs]
    # One backward pass: the batch gradient and every layer's per-example delta.
    (_, inputs), (grad_sum, deltas) = jax.value_and_grad(
        summed_loss, argnums=(0, 1), has_aux=True)(params, zeros)
    sq = jnp.zeros(x.shape[0], jnp.float32)
    for entry, layer_inputs, delta in zip(shape_tape.entries, inputs, deltas):
      sq = sq + _LAYER_SQ_NORMS[entry.kind](entry.static, layer_inputs, delta)
    return {"sq_norms": sq, "grad_sum": grad_sum}

  return norms


def _dense(static, inputs, delta):
  a = inputs["x"]
  n = a.shape[0]
  a, delta = a.reshape(n, -1, a.shape[-1]), delta.reshape(n, -1, delta.shape[-1])
  if a.shape[1] == 1:
    sq = jnp.sum(a[:, 0] ** 2, -1) * jnp.sum(delta[:, 0] ** 2, -1)
  else:
    sq = jnp.sum(jnp.einsum("npf,npo->nfo", a, delta) ** 2, (1, 2))
  if static["bias"]:
    sq = sq + jnp.sum(delta.sum(1) ** 2, -1)
  return sq


def _conv(static, inputs, delta):
  """Over chunks of the batch sized like the convolution's own (models/conv.py): the
  tap slices of a whole batch would go to memory and back."""
  kh, kw, cin, cout = static["kernel_shape"]
  x = inputs["x"]
  groups, n = static["groups"], x.shape[0]
  if groups != 1 and not (cin == 1 and groups == cout):
    raise UserError("the fast per-example path handles dense and depthwise convolutions, not "
                    f"groups={groups}; use probes.method=vmap")

  def chunk_sq(xc, dc):
    xp = jnp.pad(xc, ((0, 0), *static["padding"], (0, 0)))
    tap_slices = [t for _, t in taps(xp, (kh, kw), static["strides"], static["dilation"])]
    m = xc.shape[0]
    d = dc.reshape(m, -1, cout)
    if groups == 1:
      cols = tap_slices[0] if len(tap_slices) == 1 else jnp.concatenate(tap_slices, -1)
      cols = cols.reshape(m, -1, cols.shape[-1])
      positions, k = cols.shape[1:]
      if positions * (k + cout) < k * cout:
        sq = jnp.sum(jnp.einsum("npk,nqk->npq", cols, cols) * jnp.einsum("npc,nqc->npq", d, d),
                     (1, 2))
      else:
        sq = jnp.sum(jnp.einsum("npk,npc->nkc", cols, d) ** 2, (1, 2))
    else:  # depthwise: one weight per tap and channel
      per_tap = jnp.stack([t.reshape(m, -1, cout) * d for t in tap_slices], 1).sum(2)
      sq = jnp.sum(per_tap ** 2, (1, 2))
    if static["bias"]:
      sq = sq + jnp.sum(d.sum(1) ** 2, -1)
    return sq

  slice_bytes = delta[0].size // cout * kh * kw * x.shape[-1] * x.dtype.itemsize
  chunk = images_per_chunk(n, slice_bytes, (kh, kw), static["strides"])
  return map_chunks(chunk_sq, chunk, x, delta)


def _batchnorm(static, inputs, delta):
  n, c = delta.shape[0], delta.shape[-1]
  d = delta.reshape(n, -1, c)
  sq = jnp.zeros(n, delta.dtype)
  if static["scale"]:
    sq = sq + jnp.sum(jnp.sum(d * inputs["xhat"].reshape(n, -1, c), 1) ** 2, -1)
  if static["bias"]:
    sq = sq + jnp.sum(d.sum(1) ** 2, -1)
  return sq


_LAYER_SQ_NORMS = {"dense": _dense, "conv": _conv, "batchnorm": _batchnorm}


def make(graphdef, workload, method, chunk):
  if method not in METHODS:
    raise UserError(f"unknown per-example method {method!r}; choose one of {', '.join(METHODS)}")
  return make_fast(graphdef, workload) if method == "fast" else make_vmap(graphdef, workload,
                                                                          chunk)
