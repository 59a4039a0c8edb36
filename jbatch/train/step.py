"""Pure train and eval steps over TrainState; nothing here touches the host.

Metrics come back as sums (loss, correct, count) so that steps of different
sizes, and devices, add up exactly; callers divide once at the end.
"""

import jax
import jax.numpy as jnp
import optax
from jax import lax
from flax import nnx

from jbatch.train.state import TrainState


def _metrics(logits, labels, loss_sum):
  correct = jnp.sum(jnp.argmax(logits, -1) == labels)
  return {"loss_sum": loss_sum, "correct": correct, "count": jnp.asarray(labels.shape[0])}


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy against one-hot labels.

  The same values as optax's integer-label form; its gradient is a dense
  product instead of a scatter, which XLA constant-folds at compile time in
  time proportional to the batch (minutes for batches of millions, as the
  largest-batch search compiles).
  """
  logits = logits.astype(jnp.float32)  # bfloat16 logits (precision) lose the loss's digits
  return optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]))


def make_loss(graphdef):
  def loss_fn(params, model_state, x, y, train):
    # copy: the merged Variables belong to this (grad) trace, so BatchNorm may update them.
    model = nnx.merge(graphdef, params, model_state, copy=True)
    logits = model(x, train=train)
    losses = cross_entropy(logits, y)
    new_model_state = nnx.split(model, nnx.Param, ...)[2]
    return losses.mean(), (logits, losses.sum(), new_model_state)
  return loss_fn


def make_train_step(graphdef, tx):
  loss_fn = make_loss(graphdef)

  def train_step(state, x, y):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (logits, loss_sum, model_state)), grads = grad_fn(
        state.params, state.model_state, x, y, True)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(params, model_state, opt_state, state.step + 1)
    return new_state, _metrics(logits, y, loss_sum)

  return train_step


def make_accumulating_train_step(graphdef, tx, micro_batches):
  """One optimizer step from the mean gradient of `micro_batches` equal slices of the batch.

  Without BatchNorm this is the step on the whole batch, up to float rounding
  (tested); with it, each slice is normalized by its own statistics and the
  running averages are updated once per slice, so the two differ (measured by
  the dynamics study).
  """
  loss_fn = make_loss(graphdef)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state, x, y):
    k = micro_batches
    if x.shape[0] % k:
      raise ValueError(f"batch {x.shape[0]} is not divisible into {k} micro-batches")
    xs, ys = x.reshape(k, -1, *x.shape[1:]), y.reshape(k, -1)

    def micro(carry, xy):
      grads, model_state, metrics = carry
      (_, (logits, loss_sum, model_state)), g = grad_fn(state.params, model_state, *xy, True)
      return (jax.tree.map(jnp.add, grads, g), model_state,
              add_metrics(metrics, _metrics(logits, xy[1], loss_sum))), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    (grads, model_state, metrics), _ = lax.scan(
        micro, (zeros, state.model_state, zero_metrics()), (xs, ys))
    grads = jax.tree.map(lambda g: g / k, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, model_state, opt_state, state.step + 1), metrics

  return train_step


def make_eval_step(graphdef):
  loss_fn = make_loss(graphdef)

  def eval_step(weights, x, y):
    """weights: (params, model_state); no optimizer state, so that one compiled
    evaluation serves every optimizer."""
    params, model_state = weights
    _, (logits, loss_sum, _) = loss_fn(params, model_state, x, y, False)
    return _metrics(logits, y, loss_sum)

  return eval_step


def zero_metrics():
  return {"loss_sum": jnp.float32(0), "correct": jnp.int32(0), "count": jnp.int32(0)}


def add_metrics(a, b):
  return jax.tree.map(jnp.add, a, b)
