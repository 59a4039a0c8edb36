"""Optimizers by name, with PyTorch's conventions so that the two frameworks match.

SGD's weight decay is added to the gradient before momentum (torch.optim.SGD);
AdamW's is decoupled (torch.optim.AdamW). The learning rate may be a float or
an optax schedule.
"""

import jax.numpy as jnp
import optax

from jbatch.errors import UserError

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")


def check(cfg):
  if cfg.name not in OPTIMIZERS:
    raise UserError(f"unknown optimizer {cfg.name!r}; choose one of {', '.join(OPTIMIZERS)}")
  if cfg.learning_rate <= 0:
    raise UserError(f"learning_rate={cfg.learning_rate}; give a positive learning rate")
  if cfg.weight_decay < 0:
    raise UserError(f"weight_decay={cfg.weight_decay}; give a value >= 0")


def make(cfg, learning_rate=None, inject=False):
  """inject: the learning rate (and SGD's momentum) live in the optimizer's state
  (optax.inject_hyperparams), so that runs differing only in them share one compiled
  program; set them with with_hyperparams."""
  check(cfg)
  lr = cfg.learning_rate if learning_rate is None else learning_rate
  if inject:
    if cfg.name in ("sgd", "nesterov"):
      return optax.inject_hyperparams(lambda learning_rate, momentum: _make(
          cfg, learning_rate, momentum))(learning_rate=lr, momentum=cfg.get("momentum", 0.0))
    return optax.inject_hyperparams(lambda learning_rate: _make(cfg, learning_rate, None))(
        learning_rate=lr)
  return _make(cfg, lr, cfg.get("momentum", 0.0) or None)


def with_hyperparams(opt_state, **values):
  """An injected optimizer state (make(..., inject=True)) with new hyperparameter values."""
  unknown = set(values) - set(opt_state.hyperparams)
  if unknown:
    raise ValueError(f"the optimizer has no hyperparameter {sorted(unknown)}")
  return opt_state._replace(hyperparams={
      **opt_state.hyperparams,
      **{k: jnp.asarray(v, opt_state.hyperparams[k].dtype) for k, v in values.items()}})


def _make(cfg, lr, momentum):
  if cfg.name in ("sgd", "nesterov"):
    sgd = optax.sgd(lr, momentum=momentum, nesterov=cfg.name == "nesterov")
    if cfg.weight_decay:
      return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd)
    return sgd
  if cfg.name == "adam":
    adam = optax.adam(lr)
    if cfg.weight_decay:
      return optax.chain(optax.add_decayed_weights(cfg.weight_decay), adam)
    return adam
  return optax.adamw(lr, weight_decay=cfg.weight_decay)
