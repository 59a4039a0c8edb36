"""The duration plan against values worked by hand; training to a target."""

import jax
import numpy as np
import pytest

from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.errors import UserError
from jbatch.models import registry
from jbatch.train import checkpoint, fit as fit_lib, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine
from jbatch.train.plan import Segment



def test_plan_by_hand_partial_and_dropped_last_batch():
  # 1000 examples at batch 300: three full batches and a short one of 100.
  p = plan_lib.make(1000, 300, "partial", epochs=2.5)
  assert (p.full_steps, p.tail, p.steps_per_epoch, p.examples_per_epoch) == (3, 100, 4, 1000)
  assert (p.total_steps, p.epochs, p.steps_in(2)) == (10, 3, 2)  # round(2.5 * 4) = 10
  assert [int(p.examples_at(s)) for s in (3, 4, 5, 10)] == [900, 1000, 1300, 2600]
  assert p.total_examples == 2600 and p.epoch_at(8) == 2 and p.epoch_at(10) == 2.5
  d = plan_lib.make(1000, 300, "drop", examples=1800)  # 1.8 epochs of 3 steps: round(5.4)
  assert (d.tail, d.steps_per_epoch, d.examples_per_epoch, d.total_steps) == (0, 3, 900, 5)
  assert d.total_examples == 1500
  s = plan_lib.make(1000, 300, "partial", steps=7)
  assert (s.total_steps, s.epochs, int(s.examples_at(7))) == (7, 2, 1900)
  assert plan_lib.make(1000, 300, "partial", epochs=0.01).total_steps == 1  # at least one
  # examples_at works on traced values too (the probes' schedule uses it inside a scan)
  assert int(jax.jit(p.examples_at)(np.int32(5))) == 1300


def test_plan_with_several_devices():
  # The plan counts global batches; the batch and the short batch must split over devices.
  p = plan_lib.make(1000, 200, "partial", epochs=1)
  assert (p.steps_per_epoch, p.tail) == (5, 0)
  config_lib.check_devices(200, 8, 1000, "partial")  # 25 per device, no tail
  q = plan_lib.make(1100, 200, "partial", epochs=1)
  assert (q.steps_per_epoch, q.tail) == (6, 100)
  with pytest.raises(UserError, match="does not split over 8 devices"):
    config_lib.check_devices(200, 8, 1100, "partial")  # the short batch of 100: 12.5 each
  config_lib.check_devices(200, 8, 1100, "drop")  # dropped: fine
  with pytest.raises(UserError, match="not divisible by the 8 devices"):
    config_lib.check_devices(300, 8, 1000, "drop")


def test_evaluation_points_and_segments():
  # 4 steps an epoch: every 3 steps from the epoch's start, and every epoch end (4, 8)
  p = plan_lib.make(1000, 300, "partial", epochs=2, eval_every=3)
  assert p.eval_steps() == [3, 4, 7, 8]
  assert p.segments() == [Segment(0, 0, 3, False), Segment(0, 3, 1, True),
                          Segment(1, 0, 3, False), Segment(1, 3, 1, True)]
  # about 500 examples: round(500 / 300) = 2 steps
  q = plan_lib.make(1000, 300, "partial", epochs=2, eval_every_examples=500)
  assert q.steps_between_evals == 2 and q.eval_steps() == [2, 4, 6, 8]
  assert plan_lib.make(1000, 300, "partial", epochs=2).eval_steps() == [4, 8]
  # a last epoch cut short (2.5 epochs = 10 steps) ends with an evaluation
  assert plan_lib.make(1000, 300, "partial", epochs=2.5, eval_every=3).eval_steps() == [
      3, 4, 7, 8, 10]


def _engine(ds, seed=0):
  c = config_lib.base()
  c.mlp.batchnorm = False
  c.optimizer.learning_rate = 0.05
  model = registry.build(c, ds.input_shape, ds.num_classes, seed=seed)
  return Engine(model, optim.make(c.optimizer), parallel.make_mesh("cpu", 1))


def _fit(plan, target=None, checkpoints=None, ds=None):
  ds = ds or synthetic.make(1030, 500, (16,), 4, seed=3)
  eng = _engine(ds)
  train = eng.put(ds.train_x, ds.train_y)
  evals = {"test": eng.put(ds.test_x, ds.test_y)}
  result = fit_lib.fit(eng, train, evals, plan, seed=0, eval_batch_size=250, target=target,
                       checkpoints=checkpoints)
  return eng, result


def _flat(state):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(state.params)])


def test_segments_between_evaluations_train_exactly_as_whole_epochs():
  whole, r_whole = _fit(plan_lib.make(1030, 100, "partial", epochs=2))
  cut, r_cut = _fit(plan_lib.make(1030, 100, "partial", epochs=2, eval_every=4))
  np.testing.assert_array_equal(_flat(whole.state), _flat(cut.state))
  assert [r["steps"] for r in r_cut["history"]] == [4, 8, 11, 15, 19, 22]
  assert [r["epoch"] for r in r_cut["history"]][2] == 1
  assert r_whole["history"][-1]["test_acc"] == r_cut["history"][-1]["test_acc"]
  assert r_cut["history"][-1]["examples"] == 2060


def test_a_target_stops_at_the_first_crossing_of_the_same_run_without_it():
  plan = plan_lib.make(1030, 50, "drop", epochs=3, eval_every=2)
  _, free = _fit(plan)
  accs = [r["test_acc"] for r in free["history"]]
  value = float(np.quantile(accs, 0.4))  # crossed somewhere inside the run
  first = next(r for r in free["history"] if r["test_acc"] >= value)
  assert first["steps"] < plan.total_steps
  _, stopped = _fit(plan, fit_lib.Target("acc", value, "test"))
  assert stopped["status"] == "ok"
  t = stopped["target"]
  assert t["reached"] and t["steps"] == first["steps"] and t["examples"] == first["examples"]
  assert t["examples"] == 50 * first["steps"]
  assert stopped["history"][-1]["steps"] == first["steps"]  # training stopped there
  # the same target as an error rate, and a loss target, stop at their own crossings
  _, by_error = _fit(plan, fit_lib.Target("error", 1 - value + 1e-9, "test"))
  assert by_error["target"]["steps"] == first["steps"]
  losses = [r["test_loss"] for r in free["history"]]
  loss_at = next(r["steps"] for r in free["history"] if r["test_loss"] <= np.median(losses))
  _, by_loss = _fit(plan, fit_lib.Target("loss", float(np.median(losses)), "test"))
  assert by_loss["target"]["steps"] == loss_at
  # stop=False: the whole run, bit for bit the one without a target, and the same crossing
  eng_free, _ = _fit(plan)
  eng_on, going_on = _fit(plan, fit_lib.Target("acc", value, "test", stop=False))
  timeless = lambda h: [{k: v for k, v in r.items() if k not in (
      "train_seconds", "epoch_s", "eval_s", "samples_per_sec")} for r in h]
  assert timeless(going_on["history"]) == timeless(free["history"])
  np.testing.assert_array_equal(_flat(eng_on.state), _flat(eng_free.state))
  assert going_on["target"]["steps"] == first["steps"] and going_on["status"] == "ok"


def test_a_target_never_met_is_a_result():
  plan = plan_lib.make(1030, 100, "partial", epochs=1, eval_every=5)
  _, result = _fit(plan, fit_lib.Target("acc", 0.9999, "test"))
  assert result["status"] == "not_reached"
  assert result["target"]["reached"] is False and result["target"]["steps"] is None
  assert result["history"][-1]["steps"] == plan.total_steps
  assert result["target"]["best"] == max(r["test_acc"] for r in result["history"])


def test_resume_after_the_target_gives_the_same_answer(tmp_path):
  plan = plan_lib.make(1030, 50, "drop", epochs=3, eval_every=2)
  _, free = _fit(plan)
  value = float(np.quantile([r["test_acc"] for r in free["history"]], 0.4))
  target = fit_lib.Target("acc", value, "test")
  ck = lambda: checkpoint.RunCheckpoints(str(tmp_path / "run"), every=1)
  eng, first = _fit(plan, target, ck())
  again_eng, again = _fit(plan, target, ck())  # a fresh engine, restored from the checkpoint
  assert again["target"] == first["target"] and again["history"] == first["history"]
  np.testing.assert_array_equal(_flat(again_eng.state), _flat(eng.state))
  assert again["resumed_from_epoch"] == plan.epoch_at(first["target"]["steps"])


