"""Learning rates that follow the batch size: a scaling rule, warmup, then a decay shape.

The base learning rate is given at a base batch size; a batch size B gets
  none:   base
  linear: base * B / base_batch      (Goyal et al. 2017)
  sqrt:   base * sqrt(B / base_batch) (Krizhevsky 2014, Hoffer et al. 2017)
Warmup (in epochs) rises linearly from min(base, peak) to the peak, as in
Goyal et al.'s gradual warmup; then the rate is constant, follows a cosine to
final_fraction * peak per step, or is multiplied by gamma at given epochs.
"""

import math

import jax.numpy as jnp
import ml_collections
import optax

from jbatch.errors import UserError

RULES = ("none", "linear", "sqrt")
DECAYS = ("constant", "cosine", "step")


def default_config(decay):
  """The config's schedule section: base LRs are given at base_batch_size."""
  return ml_collections.ConfigDict(dict(
      base_batch_size=128, warmup_epochs=0.0, decay=decay, final_fraction=0.0,
      step_epochs=(), step_gamma=0.1))


def scaled_lr(base_lr, base_batch, batch_size, rule):
  if rule == "none":
    return base_lr
  ratio = batch_size / base_batch
  return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


def check(cfg, rules, epochs):
  """cfg: the config's schedule section; rules: the rules a grid will use."""
  for rule in rules:
    if rule not in RULES:
      raise UserError(f"unknown LR scaling rule {rule!r}; choose one of {', '.join(RULES)}")
  if cfg.decay not in DECAYS:
    raise UserError(f"unknown schedule decay {cfg.decay!r}; choose one of {', '.join(DECAYS)}")
  if cfg.base_batch_size <= 0:
    raise UserError(f"schedule.base_batch_size={cfg.base_batch_size}; give a positive batch size")
  if cfg.warmup_epochs < 0:
    raise UserError(f"schedule.warmup_epochs={cfg.warmup_epochs}; give a value >= 0")
  if cfg.warmup_epochs >= epochs:
    raise UserError(f"warmup of {cfg.warmup_epochs} epochs is not shorter than the "
                    f"{epochs} epochs of training; lower schedule.warmup_epochs")
  if not 0 <= cfg.final_fraction <= 1:
    raise UserError(f"schedule.final_fraction={cfg.final_fraction}; give a value in [0, 1]")
  if cfg.decay == "step":
    lo = cfg.warmup_epochs
    if not cfg.step_epochs or any(not lo < e < epochs for e in cfg.step_epochs):
      raise UserError(f"step decay needs schedule.step_epochs after the warmup and before "
                      f"the end, inside ({lo}, {epochs}); got "
                      f"{tuple(cfg.step_epochs)}")
    if not 0 < cfg.step_gamma <= 1:
      raise UserError(f"schedule.step_gamma={cfg.step_gamma}; give a factor in (0, 1]")


def make(cfg, rule, base_lr, plan):
  """An optax schedule (step -> learning rate) and its peak value; plan (train/plan.py)
  turns the epochs of warmup and step boundaries into steps."""
  peak = scaled_lr(base_lr, cfg.base_batch_size, plan.batch_size, rule)
  warmup = plan.steps_of_epochs(cfg.warmup_epochs)
  decay_steps = max(plan.total_steps - warmup, 1)
  if cfg.decay == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.final_fraction)
  elif cfg.decay == "step":
    boundaries = {plan.steps_of_epochs(e) - warmup: cfg.step_gamma for e in cfg.step_epochs}
    after = optax.piecewise_constant_schedule(peak, boundaries)
  else:
    after = optax.constant_schedule(peak)
  if not warmup:
    return after, peak
  start = min(base_lr, peak)
  ramp = lambda step: start + (peak - start) * jnp.minimum(step, warmup) / warmup
  return optax.join_schedules([ramp, after], [warmup]), peak
