"""The dynamics study: probes inside the fused epoch, gradient accumulation, bad input, and the
probes on 8 devices."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from conftest import REPO, run_cli
from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.models import registry
from jbatch.probes import per_example, schedule
from jbatch.train import loop, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine

SMALL = [f"--config={REPO}/experiments/dynamics_small.py", "--config.dataset=synthetic",
         "--config.synthetic.num_train=512", "--config.synthetic.num_test=256",
         "--config.synthetic.input_shape=(16,)", "--config.model=mlp", "--config.mlp.depth=2",
         "--config.mlp.width=16", "--config.epochs=1", "--config.batch_sizes=32,128",
         "--config.eval_train_examples=256", "--config.probes.every_examples=256",
         "--config.probes.batch_size=64", "--config.sharpness.examples=64",
         "--config.accumulation.steps=()"]


def _engine(c, ds, micro_batches=1):
  model = registry.build(c, ds.input_shape, ds.num_classes, seed=0)
  return Engine(model, optim.make(c.optimizer), parallel.make_mesh("cpu", 1), micro_batches)


def _probe_cfg(**kw):
  cfg = dict(every=0, every_examples=0, method="fast", chunk=8, batch="fixed", batch_size=64,
             groups=4)
  return ml_collections.ConfigDict({**cfg, **kw})


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


def test_probes_leave_training_unchanged_and_measure_the_state_they_see():
  c = config_lib.base()
  ds = synthetic.make(1030, 10, (32,), 10, seed=0)
  eng = _engine(c, ds)
  x, y = eng.put(ds.train_x, ds.train_y)
  init = jax.tree.map(np.array, eng.state.params)
  start = jax.tree.map(np.array, eng.state)
  plan = plan_lib.make(1030, 100, "partial", epochs=1)
  probe = schedule.Probe(eng, _probe_cfg(every=11), plan)
  args = (jax.tree.map(jax.numpy.copy, eng.state.params), x[:64], y[:64])
  probed = eng.fused_epoch(plan, probe=probe)
  state, metrics = probed(eng.state, x, y, loop.epoch_key(0, 0), args)
  plain_state, plain_metrics = eng.fused_epoch(plan)(
      start, x, y, loop.epoch_key(0, 0))
  np.testing.assert_array_equal(_flat(state.params), _flat(plain_state.params))
  assert int(metrics["acc"]) == int(plain_metrics["acc"])
  out = jax.device_get(metrics["probes"])
  assert np.flatnonzero(out["due"]).tolist() == [0, 10]  # the first step, then every 11th
  values = out["values"]
  # Every value is of the parameters before the probed step: at step 0 the initial ones.
  ten, _ = eng.fused_epoch(plan, segment=plan_lib.Segment(0, 0, 10, False))(
      jax.tree.map(np.array, start), x, y, loop.epoch_key(0, 0), 0)
  assert values["distance"][0] == 0
  assert values["distance"][10] == pytest.approx(
      np.linalg.norm(_flat(ten.params) - _flat(init)), rel=1e-5)
  assert values["update"][10] == pytest.approx(
      np.linalg.norm(_flat(state.params) - _flat(ten.params)), rel=1e-4)
  assert values["distance"][5] == 0  # not a probe step: nothing computed
  first = per_example.make(eng.graphdef, eng.workload, "vmap", 8)(init, start.model_state, x[:64], y[:64])
  np.testing.assert_allclose(values["sq_norms"][0], first["sq_norms"], rtol=1e-5)


def test_a_probe_of_the_current_batch_skips_the_short_last_one():
  # 1030 examples at batch 100: the last batch has 30, which 4 groups do not split (and
  # 30 is not a multiple of the vmap chunk of 20); it is trained on but never probed.
  c = config_lib.base()
  ds = synthetic.make(1030, 10, (32,), 10, seed=0)
  eng = _engine(c, ds)
  x, y = eng.put(ds.train_x, ds.train_y)
  plan = plan_lib.make(1030, 100, "partial", epochs=1)
  for method in ("fast", "vmap"):
    probe = schedule.Probe(eng, _probe_cfg(every=1, batch="current", method=method, chunk=20),
                           plan)
    args = (jax.tree.map(jax.numpy.copy, eng.state.params), x[:64], y[:64])
    state, metrics = eng.fused_epoch(plan, probe=probe)(
        jax.tree.map(np.array, eng.state), x, y, loop.epoch_key(0, 0), args)
    out = jax.device_get(metrics["probes"])
    assert int(state.step) == 11 and int(metrics["count"]) == 1030
    assert out["due"].tolist() == [True] * 10 + [False]
    assert np.isfinite(out["values"]["g2"]).all() and out["values"]["g2"][-1] == 0


def test_probes_due_by_examples_seen():
  c = config_lib.base()
  ds = synthetic.make(1030, 10, (32,), 10, seed=0)
  eng = _engine(c, ds)
  probe = schedule.Probe(eng, _probe_cfg(every_examples=250),
                         plan_lib.make(1030, 100, "partial", epochs=1))
  due = [int(i) for i in range(22) if probe.due(np.int32(i))]
  # examples seen after step i+1: 100, 200, ..., 1000, 1030, then 1130, ...: multiples of 250
  # are crossed at 300, 500, 800, 1000, then 1280 (step 13), 1530 (15), 1780 (18), 2030 (20).
  assert due == [0, 2, 4, 7, 9, 13, 15, 18, 20]
  assert int(probe.plan.examples_at(np.int32(12))) == 1130


def test_accumulated_batchnorm_averages_each_micro_batchs_own_statistics():
  # With BatchNorm, k micro-batches are not one batch: each is normalized by its own
  # statistics and updates the running averages once. One step of 2 x 4 from the initial
  # running mean 0 and variance 1, by hand: m = 0.9 (0.9 * 0 + 0.1 mu1) + 0.1 mu2.
  c = config_lib.base()
  c.mlp.depth, c.mlp.width = 1, 6
  ds = synthetic.make(8, 4, (5,), 3, seed=2)
  x = ds.train_x.astype(np.float64)
  stats = {}
  for micro in (2, 1):
    eng = _engine(c, ds, micro)
    w, b = (np.asarray(eng.state.params["hidden"][0][k][...], np.float64) for k in ("kernel", "bias"))
    state, _ = jax.jit(eng.train_step)(eng.state, jax.numpy.asarray(ds.train_x),
                                       jax.numpy.asarray(ds.train_y))
    stats[micro] = (np.asarray(state.model_state["norm"]["mean"][...]),
                    np.asarray(state.model_state["norm"]["var"][...]))
  a = np.maximum(x @ w + b, 0)  # what BatchNorm sees (the same weights before the step)
  mean, var = np.zeros(6), np.ones(6)
  for part in (a[:4], a[4:]):
    mean, var = 0.9 * mean + 0.1 * part.mean(0), 0.9 * var + 0.1 * part.var(0)
  np.testing.assert_allclose(stats[2][0], mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats[2][1], var, rtol=1e-5, atol=1e-6)
  # and one batch of 8 updates them once, with the statistics of all 8
  np.testing.assert_allclose(stats[1][0], 0.1 * a.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats[1][1], 0.9 + 0.1 * a.var(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_accumulated_micro_batches_equal_one_batch_without_batchnorm(batchnorm):
  c = config_lib.base()
  c.mlp.batchnorm = batchnorm
  ds = synthetic.make(512, 10, (32,), 10, seed=0)
  params = []
  for micro in (4, 1):
    eng = _engine(c, ds, micro)
    x, y = eng.put(ds.train_x, ds.train_y)
    state = eng.state
    for e in range(2):
      state, _ = eng.fused_epoch(plan_lib.make(512, 128, "drop", epochs=1))(state, x, y, loop.epoch_key(0, e))
    params.append(_flat(state.params))
  diff = np.max(np.abs(params[0] - params[1]))
  if batchnorm:
    assert diff > 1e-3  # each micro-batch is normalized by its own statistics
  else:
    assert diff < 1e-5


def test_study_on_8_devices_uses_per_device_noise_estimate(tmp_path):
  proc = run_cli(*SMALL, "--config.optimizers=sgd", f"--workdir={tmp_path}",
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "results.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert sorted(r["batch_size"] for r in records) == [32, 128]
  for r in records:
    assert r["status"] == "ok" and r["n_devices"] == 8
    probes = [p for row in r["history"] for p in row["probes"]]
    # the first step, then the steps that reach 256 and 512 examples seen, each probe at the
    # parameters before its step (0, 256 - b and 512 - b examples seen)
    b = r["batch_size"]
    assert [p["examples"] for p in probes] == [0, 256 - b, 512 - b]
    assert [p["step"] for p in probes] == [0, 256 // b - 1, 512 // b - 1]
    assert all(np.isfinite(p["g2_groups"]) for p in probes)
    assert probes[0]["distance"] == 0 and all(p["distance"] > 0 for p in probes[1:])
    assert len(r["norms_early"]) == 64 and r["sharpness"] > 0
  report = open(tmp_path / "report.md").read()
  assert "from devices of the probe batch" in report
