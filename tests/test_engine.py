import os
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.errors import UserError
from jbatch.models import registry
from jbatch.train import loop, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine


def _engine(c, ds):
  model = registry.build(c, ds.input_shape, ds.num_classes, seed=0)
  return Engine(model, optim.make(c.optimizer), parallel.make_mesh("cpu", 1))


def _params(state):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(state.params)])


@pytest.mark.parametrize("last_batch", ["partial", "drop"])
def test_fused_and_host_loop_reach_the_same_parameters(last_batch):
  c = config_lib.base()
  ds = synthetic.make(1030, 10, (32,), 10, seed=0)
  results = []
  for mode in ("fused", "host"):
    eng = _engine(c, ds)
    x, y = eng.put(ds.train_x, ds.train_y)
    plan = plan_lib.make(ds.num_train, 100, last_batch, epochs=1)
    run = eng.fused_epoch(plan) if mode == "fused" else eng.host_loop(plan)
    state = eng.state
    for e in range(2):
      state, metrics = run(state, x, y, loop.epoch_key(0, e))
    results.append((_params(state), int(state.step), loop.summarize(metrics)))
  (p_fused, steps_fused, m_fused), (p_host, steps_host, m_host) = results
  assert steps_fused == steps_host == 2 * (11 if last_batch == "partial" else 10)
  np.testing.assert_allclose(p_fused, p_host, rtol=1e-5, atol=1e-6)
  assert m_fused["loss"] == pytest.approx(m_host["loss"], rel=1e-5)


def test_an_epoch_sees_every_example_once():
  ds = synthetic.make(250, 10, (4,), 3, seed=0)
  c = config_lib.base()
  eng = _engine(c, ds)
  x, y = eng.put(ds.train_x, ds.train_y)
  state, metrics = eng.fused_epoch(plan_lib.make(250, 100, "partial", epochs=1))(eng.state, x, y, loop.epoch_key(0, 0))
  assert int(metrics["count"]) == 250
  _, metrics = eng.fused_epoch(plan_lib.make(250, 100, "drop", epochs=1))(state, x, y, loop.epoch_key(0, 1))
  assert int(metrics["count"]) == 200


def _np(p):
  return np.asarray(p["value"] if isinstance(p, dict) else p[...], np.float64)


def test_sgd_step_matches_the_update_rule_by_hand():
  # One SGD step with momentum from zero state is params -= lr * grad, with the gradient of
  # the mean softmax cross-entropy of a one-hidden-layer ReLU network written out in NumPy.
  c = config_lib.base()
  c.mlp.batchnorm, c.mlp.depth, c.mlp.width = False, 1, 16
  ds = synthetic.make(64, 10, (8,), 4, seed=1)
  eng = _engine(c, ds)
  p = eng.state.params
  w1, b1 = _np(p["hidden"][0]["kernel"]), _np(p["hidden"][0]["bias"])
  w2, b2 = _np(p["out"]["kernel"]), _np(p["out"]["bias"])
  x, y = ds.train_x.astype(np.float64), ds.train_y
  pre = x @ w1 + b1
  h = np.maximum(pre, 0)
  logits = h @ w2 + b2
  prob = np.exp(logits - logits.max(1, keepdims=True))
  prob /= prob.sum(1, keepdims=True)
  dlogits = (prob - np.eye(w2.shape[1])[y]) / len(x)
  dh = (dlogits @ w2.T) * (pre > 0)
  grads = {"w1": x.T @ dh, "b1": dh.sum(0), "w2": h.T @ dlogits, "b2": dlogits.sum(0)}
  new_state, _ = jax.jit(eng.train_step)(eng.state, jnp.asarray(ds.train_x), jnp.asarray(y))
  q, lr = new_state.params, c.optimizer.learning_rate
  for got, before, g in ((q["hidden"][0]["kernel"], w1, "w1"), (q["hidden"][0]["bias"], b1, "b1"),
                         (q["out"]["kernel"], w2, "w2"), (q["out"]["bias"], b2, "b2")):
    np.testing.assert_allclose(_np(got), before - lr * grads[g], rtol=1e-5, atol=1e-7)


def test_evaluate_counts_every_test_example():
  c = config_lib.base()
  ds = synthetic.make(100, 1234, (8,), 4, seed=1)
  eng = _engine(c, ds)
  tx, ty = eng.put(ds.test_x, ds.test_y)
  m = eng.evaluator(1234, 500)(eng.weights(), tx, ty)
  assert int(m["count"]) == 1234
  logits = eng.model()(jnp.asarray(ds.test_x), train=False)
  assert int(m["acc"]) == int((jnp.argmax(logits, -1) == ds.test_y).sum())


def test_optimizers_follow_pytorch_conventions():
  c = config_lib.base().optimizer
  c.name, c.weight_decay, c.momentum = "sgd", 0.1, 0.0
  tx = optim.make(c)
  params = {"w": jnp.array([1.0])}
  updates, _ = tx.update({"w": jnp.array([0.5])}, tx.init(params), params)
  # torch.optim.SGD: w - lr * (g + wd * w) = 1 - 0.01 * (0.5 + 0.1)
  assert float(optax.apply_updates(params, updates)["w"][0]) == pytest.approx(1 - 0.01 * 0.6)
  c.name = "lamb"
  with pytest.raises(UserError, match="unknown optimizer"):
    optim.make(c)


def test_device_split_errors():
  with pytest.raises(UserError, match="not divisible by the 8 devices"):
    config_lib.check_devices(100, 8, 1000, "drop")
  with pytest.raises(UserError, match="last_batch=drop"):
    config_lib.check_devices(96, 8, 1004, "partial")  # a last batch of 44 examples
  config_lib.check_devices(96, 8, 1004, "drop")


def test_cpu_programs_take_their_temporaries_from_a_reused_heap():
  """Repeated calls of a CPU program reuse its temporaries' memory instead of faulting in
  fresh pages (jbatch/cpu_memory.py): a 48 MB block from one heap, stored by the compile
  cache; a 98 MB one compiled split into heaps, which the cache cannot store. Plain
  jax.jit before jbatch's settings maps the 48 MB block afresh at every call. In a fresh
  process: in a warm one the arenas may already hold a free chunk big enough for it."""
  import json
  import platform
  import subprocess
  import sys
  from jbatch import cpu_memory
  assert not isinstance(cpu_memory.jit(lambda x: x, "gpu"), cpu_memory.CpuJit)
  if platform.libc_ver()[0] != "glibc":
    pytest.skip("mallopt is glibc's")
  out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], capture_output=True, text=True,
                       check=True, env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
  runs = json.loads(out.stdout.strip().splitlines()[-1])
  block = runs["default"]["temp"]
  assert 32 << 20 < block < cpu_memory.SINGLE_BLOCK_BYTES < runs["engine_large"]["temp"]
  assert runs["default"]["faults"] > block // 4096 // 2, runs  # its block, afresh each call
  assert runs["engine"]["faults"] < block // 4096 // 100, runs
  assert runs["engine_large"]["faults"] < block // 4096 // 100, runs
  assert runs["default"]["storable"] is True and runs["engine"]["storable"] is True
  assert "Multiple temp buffer" in runs["engine_large"]["storable"]


_FAULTS_SCRIPT = """
import json, resource, jax
from jax.experimental import serialize_executable
from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.models import registry
from jbatch.train import optim, parallel
from jbatch.train.engine import Engine
c = config_lib.base()
ds = synthetic.make(24_000, 10, (32,), 10, seed=0)
model = registry.build(c, ds.input_shape, ds.num_classes, seed=0)
model.chunk = 0  # one block of temporaries that grows with the batch
eng = Engine(model, optim.make(c.optimizer), parallel.make_mesh("cpu", 1))
x, y = eng.put(ds.train_x, ds.train_y)


def typical_faults(step, xb, yb):
  per_call = []
  for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(step(eng.state, xb, yb))
    per_call.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  # The first calls grow the heap, and a call that lands on a worker thread whose arena
  # has not held it yet grows that one: the typical call is the claim.
  return sorted(per_call)[len(per_call) // 2]


def storable(compiled):  # what the persistent compile cache writes
  try:
    serialize_executable.serialize(compiled)
    return True
  except Exception as e:
    return str(e)


runs = {}
# plain jax.jit first: the engine's jit sets glibc's options on its first use
for name, jit, rows in (("default", jax.jit, 12_000), ("engine", eng.jit, 12_000),
                        ("engine_large", eng.jit, 24_000)):
  xb, yb = x[:rows], y[:rows]
  step = jit(eng.train_step).lower(eng.state, xb, yb).compile()
  runs[name] = {"temp": step.memory_analysis().temp_size_in_bytes,
                "faults": typical_faults(step, xb, yb), "storable": storable(step)}
print(json.dumps(runs))
"""
