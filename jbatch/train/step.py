"""Pure train and eval steps over TrainState; nothing here touches the host.

What a step computes comes from the workload (workloads/base.py): its
prediction, per-example loss and metrics. Metrics come back as sums ("loss",
each workload metric, "count") so that steps of different sizes, and devices,
add up exactly; callers divide once at the end.
"""

import jax
import jax.numpy as jnp
import optax
from jax import lax
from flax import nnx

from jbatch.train.state import TrainState


def _float32(tree):
  """Floating predictions in float32: bfloat16 outputs (precision) lose the loss's digits."""
  return jax.tree.map(lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating)
                      else a, tree)


def predict_losses(workload, model, x, y, train):
  """(prediction, per-example losses) of the workload's model on a batch."""
  prediction = _float32(workload.predict(model, x, train))
  return prediction, workload.loss(prediction, y).astype(jnp.float32)


def _metrics(workload, prediction, y, losses):
  out = {"loss": losses.sum(), "count": jnp.asarray(y.shape[0], jnp.int32)}
  for name, fn in workload.metrics.items():
    out[name] = jnp.sum(fn(prediction, y))
  return out


def make_loss(graphdef, workload):
  def loss_fn(params, model_state, x, y, train):
    # copy: the merged Variables belong to this (grad) trace, so BatchNorm may update them.
    model = nnx.merge(graphdef, params, model_state, copy=True)
    prediction, losses = predict_losses(workload, model, x, y, train)
    new_model_state = nnx.split(model, nnx.Param, ...)[2]
    return losses.mean(), (_metrics(workload, prediction, y, losses), new_model_state)
  return loss_fn


def make_train_step(graphdef, tx, workload):
  loss_fn = make_loss(graphdef, workload)

  def train_step(state, x, y):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, x, y, True)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(params, model_state, opt_state, state.step + 1)
    return new_state, metrics

  return train_step


def make_accumulating_train_step(graphdef, tx, workload, micro_batches):
  """One optimizer step from the mean gradient of `micro_batches` equal slices of the batch.

  Without BatchNorm this is the step on the whole batch, up to float rounding
  (tested); with it, each slice is normalized by its own statistics and the
  running averages are updated once per slice, so the two differ (measured by
  the dynamics study).
  """
  loss_fn = make_loss(graphdef, workload)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, x, y):
    k = micro_batches
    if x.shape[0] % k:
      raise ValueError(f"batch {x.shape[0]} is not divisible into {k} micro-batches")
    xs, ys = x.reshape(k, -1, *x.shape[1:]), y.reshape(k, -1, *y.shape[1:])

    def micro(carry, xy):
      grads, model_state, metrics = carry
      (_, (m, model_state)), g = grad_fn(state.params, model_state, *xy, True)
      return (jax.tree.map(jnp.add, grads, g), model_state, add_metrics(metrics, m)), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    shapes = jax.eval_shape(lambda: grad_fn(state.params, state.model_state, xs[0], ys[0],
                                            True)[0][1][0])
    (grads, model_state, metrics), _ = lax.scan(
        micro, (zeros, state.model_state, zero_metrics(shapes)), (xs, ys))
    grads = jax.tree.map(lambda g: g / k, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, model_state, opt_state, state.step + 1), metrics

  return train_step


def make_eval_step(graphdef, workload):
  loss_fn = make_loss(graphdef, workload)

  def eval_step(weights, x, y):
    """weights: (params, model_state); no optimizer state, so that one compiled
    evaluation serves every optimizer."""
    params, model_state = weights
    _, (metrics, _) = loss_fn(params, model_state, x, y, False)
    return metrics

  return eval_step


def zero_metrics(shapes):
  """Zeros shaped as a step's metrics (from jax.eval_shape of the step)."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def add_metrics(a, b):
  return jax.tree.map(jnp.add, a, b)
