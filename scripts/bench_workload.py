"""A user workload's fused epoch against the same SGD written by hand, one process:
examples/linear_regression.py through the engine (train/loop.py's lax.scan over its
steps, the permutation drawn on the device) against a hand-written jax.jit + lax.scan
over the same permutation, the same loss and update. Median of `--rounds` epochs each,
after a warm-up; prints engine / hand (1.0: no cost for going through the interface).

  python scripts/bench_workload.py [--batch_sizes=10,100,1000] [--num_train=100000]
      [--dim=8] [--rounds=9]
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from jax import lax

from jbatch import workloads
from jbatch.data import shuffle
from jbatch.studies import critical_batch
from jbatch.train import loop, plan as plan_lib, point as point_lib

_BATCHES = flags.DEFINE_list("batch_sizes", ["10", "100", "1000"], "batch sizes")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 100_000, "training examples")
_DIM = flags.DEFINE_integer("dim", 8, "features")
_ROUNDS = flags.DEFINE_integer("rounds", 9, "timed epochs per side")
LR = 0.01
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                       "linear_regression.py")


def hand_written(x, y, batch_size):
  """SGD on 0.5 (x.w - y)^2 over one epoch of the same permutation, as one compiled scan."""
  n = x.shape[0]
  steps = n // batch_size

  def step(w, idx):
    xb, yb = x[idx], y[idx]
    loss, g = jax.value_and_grad(lambda w: jnp.mean(0.5 * jnp.square(xb @ w[:, 0] - yb)))(w)
    return w - LR * g, loss

  def epoch(w, key):
    perm = shuffle.permutation(key, n)[:steps * batch_size].reshape(steps, batch_size)
    w, losses = lax.scan(step, w, perm)
    return w, losses.sum()

  return jax.jit(epoch, donate_argnums=0)


def median_s(fn, rounds):
  fn()
  times = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(_):
  c = critical_batch.default_config()
  c.workload, c.validation_examples, c.num_devices = f"{EXAMPLE}:workload", 0, 1
  c.workload_config = ml_collections.ConfigDict(dict(dim=_DIM.value, noise=1.0,
                                                     num_train=_NUM_TRAIN.value,
                                                     num_validation=1000))
  c.optimizer.momentum, c.optimizer.learning_rate = 0.0, LR
  workload = workloads.from_config(c)
  data = workloads.load_data(c, workload)
  print(f"linear regression d={_DIM.value}, {data.num_train:,} examples, SGD lr {LR}, "
        f"median of {_ROUNDS.value} epochs, jax {jax.__version__}, "
        f"{jax.devices()[0].device_kind}")
  print(f"{'batch':>6} {'engine ms':>10} {'hand ms':>8} {'engine/hand':>12}")
  for b in map(int, _BATCHES.value):
    plan = plan_lib.make(data.num_train, b, "drop", epochs=1)
    p = point_lib.setup(c, workload, data, batch_size=b, seed=0, plan=plan)
    x, y = p.train_arrays()
    key = loop.epoch_key(0, 0)
    engine_epoch = p.engine.fused_epoch(plan)
    state = [p.engine.state]

    def run_engine():
      state[0], metrics = engine_epoch(state[0], x, y, key)
      return metrics

    hand = hand_written(x, y, b)
    w = [jnp.zeros((_DIM.value, 1))]

    def run_hand():
      w[0], loss = hand(w[0], key)
      return loss

    engine_s, hand_s = median_s(run_engine, _ROUNDS.value), median_s(run_hand, _ROUNDS.value)
    print(f"{b:>6} {1e3 * engine_s:>10.2f} {1e3 * hand_s:>8.2f} {engine_s / hand_s:>12.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
