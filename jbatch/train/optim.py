"""Optimizers by name, with PyTorch's conventions so that the two frameworks match.

SGD's weight decay is added to the gradient before momentum (torch.optim.SGD);
AdamW's is decoupled (torch.optim.AdamW). The learning rate may be a float or
an optax schedule.
"""

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


def make(cfg, learning_rate=None):
  check(cfg)
  lr = cfg.learning_rate if learning_rate is None else learning_rate
  momentum = cfg.get("momentum", 0.0) or None
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
