"""One sweep, one process against `--workers=N`: wall seconds of the same 8-point grid.

The grid is the accuracy study's S4 MLP (depth 6, width 64) on MNIST's 60,000
training images (synthetic data of MNIST's shape when the idx files are
absent), batch 32, 48, 64 and 128 x seeds 0 and 1, 10 epochs: small-batch points,
each bound by one core. The compile cache is a fresh folder, filled by a
warm-up run of each side first, so that both sides load their programs alike. Every run
must record each of the 8 points exactly once.

  JBATCH_DATA_DIR=../shared/data python scripts/bench_workers.py [--workers=2] [--repeats=2]
"""

import collections
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_WORKERS = flags.DEFINE_integer("workers", 2, "Workers of the shared sweep.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs of each side, alternating.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid_args():
  data = os.environ.get("JBATCH_DATA_DIR", os.path.join(os.path.dirname(REPO), "shared",
                                                        "data"))
  has_mnist = any(os.path.exists(os.path.join(data, "mnist", "train-images-idx3-ubyte" + gz))
                  for gz in ("", ".gz"))
  dataset = (["--config.dataset=mnist", f"--config.data_dir={data}"] if has_mnist else
             ["--config.dataset=synthetic", "--config.synthetic.num_train=60000",
              "--config.synthetic.input_shape=(28,28,1)"])
  return [f"--config={REPO}/experiments/accuracy_small.py", *dataset, "--config.model=mlp",
          "--config.train_subset=0", "--config.eval_train_examples=2000",
          "--config.batch_sizes=(32,48,64,128)", "--config.seeds=(0,1)",
          "--config.rules=none", "--config.epochs=10"], ("mnist" if has_mnist else "synthetic")


def run(args, workdir, cache, workers=None):
  command = [sys.executable, "-m", "jbatch", *args, f"--workdir={workdir}",
             f"--compile_cache={cache}"] + ([f"--workers={workers}"] if workers else [])
  t0 = time.perf_counter()
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  seconds = time.perf_counter() - t0
  if proc.returncode != 0:
    sys.exit(f"bench_workers: {' '.join(command)} failed:\n{proc.stderr[-3000:]}")
  with open(os.path.join(workdir, "results.jsonl")) as f:
    counts = collections.Counter(json.loads(line)["run_id"] for line in f)
  if len(counts) != 8 or set(counts.values()) != {1}:
    sys.exit(f"bench_workers: expected 8 points recorded once each, got {dict(counts)}")
  return seconds


def main(_):
  args, dataset = grid_args()
  cores = len(os.sched_getaffinity(0))
  print(f"8 points (accuracy, MLP, {dataset}, batch 32-128 x 2 seeds, 10 epochs) on "
        f"{cores} cores; {_WORKERS.value} workers against one process")
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, "xla")
    # Pinned to one core, a worker's XLA flags differ (one thread): its own cache entries.
    warm = (run(args, os.path.join(tmp, "warm1"), cache),
            run(args, os.path.join(tmp, "warm2"), cache, _WORKERS.value))
    print(f"warm-up (fills the compile cache of both): {warm[0]:.1f} s, {warm[1]:.1f} s")
    one, many = [], []
    for i in range(_REPEATS.value):
      one.append(run(args, os.path.join(tmp, f"one{i}"), cache))
      many.append(run(args, os.path.join(tmp, f"many{i}"), cache, _WORKERS.value))
      print(f"run {i + 1}: one process {one[-1]:.1f} s, {_WORKERS.value} workers "
            f"{many[-1]:.1f} s, ratio {one[-1] / many[-1]:.2f}x")
  print(f"best of {_REPEATS.value}: one process {min(one):.1f} s, {_WORKERS.value} workers "
        f"{min(many):.1f} s: {min(one) / min(many):.2f}x faster with workers")


if __name__ == "__main__":
  app.run(main)
