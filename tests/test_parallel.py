"""8 CPU devices give what 1 device gives: real sharding, in a process started with 8 devices."""

import json

import pytest

from conftest import run_python

CODE = r"""
import json, jax, numpy as np
from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.models import registry
from jbatch.train import loop, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine
assert len(jax.devices()) == 8, jax.devices()
c = config_lib.base()
ds = synthetic.make(2000, 10, (32,), 10, seed=0)
out = {}
for n in (1, 8):
  eng = Engine(registry.build(c, ds.input_shape, 10, seed=0), optim.make(c.optimizer),
               parallel.make_mesh("cpu", n))
  x, y = eng.put(ds.train_x, ds.train_y)
  epoch = eng.fused_epoch(plan_lib.make(ds.num_train, 200, "drop", epochs=1))
  state = eng.state
  for e in range(2):
    state, m = epoch(state, x, y, loop.epoch_key(0, e))
  leaves = jax.tree.leaves(state.params) + jax.tree.leaves(state.model_state)
  out[n] = [np.asarray(a).ravel().tolist() for a in leaves]
  # The compiled epoch really spreads the batch: the step's HLO holds an all-reduce.
  out[f"allreduce{n}"] = "all-reduce" in epoch.lower(state, x, y, loop.epoch_key(0, 0)).compile().as_text()
print(json.dumps(out))
"""


def test_eight_devices_match_one_device():
  proc = run_python(CODE, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  import numpy as np
  assert out["allreduce8"] and not out["allreduce1"]
  for a, b in zip(out["1"], out["8"]):
    # Summation order differs across devices; 20 steps of SGD keep it within 1e-5.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_more_cpu_devices_than_cores_finish_every_loop_mode(tmp_path):
  # The command, smaller: 8 simulated devices on a 2-core machine. The host loop
  # once deadlocked XLA's in-process all-reduce ("only 7 of them arrived") and killed the
  # process; every step now completes before the next is sent.
  from conftest import REPO, run_cli
  proc = run_cli(f"--config={REPO}/experiments/seed004_cpu_vs_gpu.py", f"--workdir={tmp_path}",
                 "--config.synthetic.num_train=24000", "--config.batch_sizes=(104,1000)",
                 "--config.epochs=1", "--config.warmup_epochs=1",
                 "--config.pow2_probe=()", "--config.max_batch=False",
                 "--config.variants=('jax_fused','jax_host')",
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  assert sorted((r["variant"], r["batch_size"]) for r in records) == [
      ("jax_fused", 104), ("jax_fused", 1000), ("jax_host", 104), ("jax_host", 1000)]
  assert all(r["status"] == "ok" and r["n_devices"] == 8 for r in records)
  # both loops trained the same steps on the same data (a short last batch of 80 at 104);
  # 8-way sums in two different programs drift apart by float rounding over 460 steps
  loss = {(r["variant"], r["batch_size"]): r["train_loss"] for r in records}
  for b in (104, 1000):
    assert loss[("jax_fused", b)] == pytest.approx(loss[("jax_host", b)], rel=5e-3)
