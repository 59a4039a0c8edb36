"""8 CPU devices give what 1 device gives: real sharding, in a process started with 8 devices."""

import json

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
