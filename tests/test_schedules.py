"""LR scaling rules, warmup and decay shapes, and durations in steps, checked by hand."""

import math

import ml_collections
import pytest

from jbatch import config as config_lib
from jbatch.errors import UserError
from jbatch.train import plan as plan_lib, schedules


def _plan(batch_size, steps_per_epoch, total_steps):
  return plan_lib.make(batch_size * steps_per_epoch, batch_size, "drop", steps=total_steps)


def _cfg(**kw):
  c = dict(base_batch_size=128, warmup_epochs=0.0, decay="constant", final_fraction=0.0,
           step_epochs=(), step_gamma=0.1)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def test_scaling_rules():
  assert schedules.scaled_lr(0.1, 128, 1024, "none") == 0.1
  assert schedules.scaled_lr(0.1, 128, 1024, "linear") == pytest.approx(0.8)
  assert schedules.scaled_lr(0.1, 128, 32, "linear") == pytest.approx(0.025)
  assert schedules.scaled_lr(0.1, 128, 512, "sqrt") == pytest.approx(0.2)


def test_cosine_per_step():
  lr, peak = schedules.make(_cfg(decay="cosine", final_fraction=0.1), "linear", 0.1,
                            _plan(256, 10, 100))
  assert peak == pytest.approx(0.2)
  assert float(lr(0)) == pytest.approx(0.2)
  assert float(lr(50)) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5), rel=1e-5)
  assert float(lr(25)) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))),
                                        rel=1e-5)
  assert float(lr(100)) == pytest.approx(0.02, rel=1e-5)


def test_goyal_warmup_then_cosine():
  # Base 0.1 at 128, batch 1024 -> peak 0.8; warmup of 1 epoch (10 steps) from 0.1.
  lr, peak = schedules.make(_cfg(decay="cosine", warmup_epochs=1), "linear", 0.1,
                            _plan(1024, 10, 50))
  assert float(lr(0)) == pytest.approx(0.1)
  assert float(lr(5)) == pytest.approx(0.45)
  assert float(lr(10)) == pytest.approx(0.8)
  assert float(lr(30)) == pytest.approx(0.4, rel=1e-5)  # halfway through the 40 cosine steps
  assert float(lr(50)) == pytest.approx(0.0, abs=1e-7)


def test_step_decay():
  lr, _ = schedules.make(_cfg(decay="step", step_epochs=(2, 4)), "none", 0.1, _plan(64, 10, 60))
  assert [float(lr(s)) for s in (0, 19, 20, 39, 40, 59)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("kw, rules, message", [
    ({}, ("cubic",), "unknown LR scaling rule"),
    ({"warmup_epochs": 5}, ("linear",), "not shorter than"),
    ({"decay": "exp"}, ("linear",), "unknown schedule decay"),
    ({"decay": "step", "step_epochs": (7,)}, ("none",), "step_epochs"),
])
def test_bad_schedules(kw, rules, message):
  with pytest.raises(UserError, match=message):
    schedules.check(_cfg(**kw), rules, epochs=5)


def test_duration_in_epochs_and_examples():
  c = config_lib.base()
  c.epochs = 3
  d = plan_lib.from_config(c, 300, 1000)  # 3 full batches + a partial one
  assert (d.epochs, d.steps_per_epoch, d.total_steps) == (3, 4, 12)
  c.last_batch = "drop"
  assert plan_lib.from_config(c, 300, 1000).total_steps == 9
  c.last_batch, c.examples = "partial", 2500  # 2.5 epochs: the third cut to half
  d = plan_lib.from_config(c, 300, 1000)
  assert (d.epochs, d.total_steps, d.steps_in(0), d.steps_in(2)) == (3, 10, 4, 2)
