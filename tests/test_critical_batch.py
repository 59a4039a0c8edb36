"""Steps to a target and the critical batch: the fit, a closed-form check on linear
regression, vmapped trials against sequential ones, the study end to end, bad input."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jbatch import workloads
from jbatch.data import synthetic
from jbatch.results import scaling
from jbatch.studies import critical_batch
from jbatch.train import fit as fit_lib, plan as plan_lib, point as point_lib
from jbatch.train import trials as trials_lib

from conftest import REPO, run_cli


def test_fit_recovers_s_min_and_b_crit_from_noisy_points():
  rng = np.random.default_rng(0)
  b = 2.0 ** np.arange(3, 13)
  s = 1000 * (1 + 200 / b) * np.exp(rng.normal(0, 0.03, len(b)))
  f = scaling.fit(b, s)
  assert f["b_crit"] == pytest.approx(200, rel=0.05)
  assert f["s_min"] == pytest.approx(1000, rel=0.05)
  assert f["e_min"] == pytest.approx(f["s_min"] * f["b_crit"])
  assert [scaling.region(f, x) for x in (16, 200, 1600)] == [
      "perfect scaling", "diminishing", "no gain"]


def _linear_regression_steps(batch, lrs, seeds, d, s2, target, max_steps):
  """Steps of SGD on linear regression (x ~ N(0, I), y = x.w* + noise of variance s2, from
  w = 0) until |w - w*|^2 <= target, per LR and seed (max_steps + 1: never)."""
  w_star = jnp.ones(d)

  def one(lr, key):
    def step(e, k):
      kx, kn = jax.random.split(k)
      x = jax.random.normal(kx, (batch, d))
      noise = jnp.sqrt(s2) * jax.random.normal(kn, (batch,))
      e = e - lr * x.T @ (x @ e - noise) / batch
      return e, jnp.sum(e ** 2)
    _, e2 = jax.lax.scan(step, -w_star, jax.random.split(key, max_steps))
    hit = e2 <= target
    return jnp.where(hit.any(), jnp.argmax(hit) + 1, max_steps + 1)

  keys = jax.random.split(jax.random.key(batch), seeds)
  return np.asarray(jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(lrs, keys))


def test_b_crit_of_linear_regression_lands_near_its_closed_form_noise_scale():
  # STUDIES.md S5: |G|^2 = |e|^2, tr(Sigma) = (d+1)|e|^2 + d s2, so at |e|^2 = t the noise
  # scale is B_simple = (d+1) + d s2 / t = 9 + 20 = 29 here.
  d, s2, target, max_steps = 8, 1.0, 0.4, 1000
  b_simple = (d + 1) + d * s2 / target
  sizes = [1, 4, 16, 64, 256]
  lrs = jnp.asarray(np.geomspace(0.003, 1.5, 24))
  steps = {}
  for b in sizes:
    per_lr = np.median(_linear_regression_steps(b, lrs, 6, d, s2, target, max_steps), axis=1)
    steps[b] = float(per_lr.min())  # the LR tuned for this batch size
    assert steps[b] <= max_steps, f"batch {b} never reached the target"
  s = [steps[b] for b in sizes]
  assert all(a > b for a, b in zip(s, s[1:]))  # steps fall with the batch (33 14 4 2 1) ...
  assert s[0] / s[1] > 2  # ... by more than half for 4x the batch below B_simple ...
  assert s[-2] / s[-1] <= 2  # ... by at most half above it
  f = scaling.fit(sizes, s)
  assert b_simple / 3 < f["b_crit"] < b_simple * 3, (f, b_simple)  # 42 against 29 here


def test_best_trial_and_bootstrap():
  trials = [{"reached": True, "steps": 40, "examples": 400, "lr": 0.1},
            {"reached": True, "steps": 30, "examples": 300, "lr": 0.3},
            {"reached": False, "steps": None, "examples": None, "lr": 1.0}]
  assert scaling.best(trials)["lr"] == 0.3
  assert scaling.best(trials[2:]) is None
  by_b = {b: [{"reached": True, "steps": 1000 * (1 + 200 / b) * f, "examples": 0, "lr": f}
              for f in (0.9, 1.0, 1.1)] for b in (16, 64, 256, 1024)}
  ci = scaling.bootstrap(by_b, replicates=200)
  assert ci["replicates"] == 200 and ci["b_crit"][0] <= 200 * 1.3 and ci["b_crit"][1] >= 200 / 1.3


def test_search_space():
  space = trials_lib.search_space((1e-3, 1.0), 4)
  np.testing.assert_allclose([lr for lr, _ in space], [1e-3, 1e-2, 1e-1, 1.0], rtol=1e-9)
  quasi = trials_lib.search_space((1e-3, 1.0), 5, "quasi", (0.5, 0.99))
  assert len({lr for lr, _ in quasi}) == 5
  assert all(1e-3 <= lr <= 1.0 and 0.5 <= m <= 0.99 for lr, m in quasi)


def _small_point(vmapped):
  c = critical_batch.default_config()
  c.dataset, c.model, c.mlp.batchnorm, c.mlp.depth = "synthetic", "mlp", False, 2
  c.synthetic.num_train, c.synthetic.num_test, c.synthetic.input_shape = 1200, 200, (16,)
  c.validation_examples = 200
  c.num_devices = 1
  ds = synthetic.make(1200, 200, (16,), 10, seed=0).hold_out(200)
  plan = plan_lib.make(ds.num_train, 50, "partial", examples=6000, eval_every_examples=200)
  w = workloads.from_config(c)
  return c, ds, point_lib.setup(c, w, ds, batch_size=50, seed=0, plan=plan, inject=True)


def test_vmapped_trials_equal_trials_run_one_by_one():
  # 1e-4 is far too small to reach a target that 0.05 reaches halfway through its run
  trials = [trials_lib.Trial(lr, None, seed) for lr in (1e-4, 0.05, 0.3) for seed in (0, 1)]
  c, ds, p = _small_point(False)
  free = trials_lib.run_sequential(p, trials[2:3], None)[0][1]["history"]
  value = float(np.quantile([r["validation_acc"] for r in free], 0.5))
  target = fit_lib.Target("acc", value, "validation")
  one_by_one = trials_lib.run_sequential(p, trials, target)
  c, ds, p = _small_point(True)
  together = trials_lib.run_vmapped(p, trials, target, 250)
  assert any(r["reached"] for r, _ in one_by_one) and not all(r["reached"] for r, _ in one_by_one)
  for (a, _), (b, _) in zip(one_by_one, together):
    assert (a["reached"], a["steps"], a["examples"]) == (b["reached"], b["steps"], b["examples"])
    assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.006)  # one example in 200


def _study_args(workdir, **overrides):
  """CLI arguments of a small synthetic study; overrides replace fields (a tuple field given
  twice on the command line would be appended to, not replaced)."""
  fields = {"dataset": "synthetic", "synthetic.num_train": 2500, "synthetic.num_test": 500,
            "synthetic.input_shape": "(16,)", "validation_examples": 500, "train_subset": 0,
            "batch_sizes": "32,512", "trials": 3, "lr_range": "0.01,0.5",
            "max_examples": 8000, "eval_every_examples": 256, "probes.every_examples": 2048,
            "probes.batch_size": 64, "speed.steps": 4, "max_batch": False,
            "target.value": 0.5}
  fields.update({k.replace("__", "."): v for k, v in overrides.items()})
  return ([f"--config={REPO}/experiments/critical_batch_small.py"]
          + [f"--config.{k}={v}" for k, v in fields.items()] + [f"--workdir={workdir}"])


def _records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_study_end_to_end_and_not_reached(tmp_path):
  out = run_cli(*_study_args(tmp_path / "a"))
  assert out.returncode == 0, out.stderr[-3000:]
  recs = _records(tmp_path / "a")
  assert [r["batch_size"] for r in recs] == [32, 512]
  for r in recs:
    assert len(r["trials"]) == 3 and r["status"] in ("ok", "not_reached")
    if r["status"] == "ok":
      best = min((t for t in r["trials"] if t["reached"]), key=lambda t: t["steps"])
      assert r["steps_to_target"] == best["steps"] and r["best_lr"] == best["lr"]
      plan = plan_lib.make(2000, r["batch_size"], "partial", steps=best["steps"])
      assert r["examples_to_target"] == plan.total_examples  # short last batches counted
      assert r["time_to_target"]["cpu"] == pytest.approx(best["steps"] * r["s_per_step"]["cpu"])
      assert r["b_simple_mean"] is not None
  report = open(tmp_path / "a" / "report.md").read()
  assert "B_crit" in report and "Every trial" in report
  # a target no trial meets: a result, and the report says what to change
  out = run_cli(*_study_args(tmp_path / "b", target__value=0.999, batch_sizes=128, trials=1,
                             max_examples=2000, probes__enabled=False))
  assert out.returncode == 0, out.stderr[-3000:]
  rec, = _records(tmp_path / "b")
  assert rec["status"] == "not_reached" and rec["n_reached"] == 0
  assert "No batch size reached the target" in open(tmp_path / "b" / "report.md").read()


def test_best_lr_at_the_edge_is_reported(tmp_path):
  rec = {"kind": "batch", "status": "ok", "batch_size": 64, "optimizer": "sgd",
         "config": {"mlp": {}, "validation_examples": 10, "eval_every_examples": 1,
                    "lr_range": (0.1, 1.0)}, "model": "mlp", "dataset": "x", "num_train": 100,
         "target": {"metric": "acc", "value": 0.5}, "max_examples": 10, "trials_vmapped": False,
         "momentum": 0.9, "last_batch": "drop", "device_kind": "cpu", "device_name": "cpu",
         "n_devices": 1, "n_reached": 1, "steps_to_target": 10, "examples_to_target": 640,
         "best_lr": 0.1, "best_lr_edge": "low", "run_id": "x",
         "trials": [{"lr": 0.1, "momentum": None, "seed": 0, "status": "ok", "reached": True,
                     "steps": 10, "examples": 640, "best": 0.6, "steps_run": 10,
                     "test_acc": 0.6}]}
  from jbatch.studies import critical_batch_report
  text = critical_batch_report.report([rec], str(tmp_path))
  assert "widen lr_range down" in text


