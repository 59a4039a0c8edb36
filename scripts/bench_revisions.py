"""The same runs on two revisions of jbatch, interleaved in one run: the S4 MLP's fused
epochs (135,844 synthetic examples; batch 100, 1,000 and the full set), a CNN's
(MNIST-shaped synthetic images, batch 256), and a learning-rate search evaluated every
512 examples (critical_batch on 60,000 synthetic examples: many short segments), each
round a fresh `jbatch` process per revision, each revision from its own git worktree.
Prints the median seconds of each side over the rounds (a run's median epoch; the
search's seconds) and after / before (1.00: the same speed).

  python scripts/bench_revisions.py [--before=1479642] [--after=HEAD] [--rounds=3]
      [--runs="S4 MLP,CNN,search"]

1479642 is the last commit before the workload interface (jbatch/workloads/).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BEFORE = flags.DEFINE_string("before", "1479642", "the revision to compare against")
_AFTER = flags.DEFINE_string("after", "HEAD", "the revision measured (HEAD: the work tree)")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "interleaved rounds per revision")
_RUNS = flags.DEFINE_list("runs", ["S4 MLP", "CNN", "search"], "which of RUNS")

E = "experiments/throughput_small.py"
C = "experiments/critical_batch_small.py"
RUNS = {  # name -> (flags, the record field timed)
    "S4 MLP": ([f"--config={E}", "--config.synthetic.num_train=135844",
               "--config.batch_sizes=(100,1000,'full')", "--config.variants=jax_fused",
               "--config.pow2_probe=()", "--config.max_batch=False", "--config.epochs=3"],
               "epoch_s_median"),
    "CNN": ([f"--config={E}", "--config.model=cnn", "--config.synthetic.num_train=10000",
            "--config.synthetic.input_shape=(28,28,1)", "--config.batch_sizes=(256,)",
            "--config.variants=jax_fused", "--config.pow2_probe=()", "--config.max_batch=False",
            "--config.epochs=3"], "epoch_s_median"),
    "search": ([f"--config={C}", "--config.dataset=synthetic", "--config.train_subset=0",
                "--config.synthetic.num_train=60000", "--config.synthetic.input_shape=(32,)",
                "--config.validation_examples=5000", "--config.batch_sizes=(64,)",
                "--config.probes.enabled=False", "--config.speed.steps=0",
                "--config.max_batch=False", "--config.target.value=0.99",
                "--config.max_examples=65536"], "search_seconds"),
}


def worktree(rev, parent):
  if rev == "HEAD":
    return REPO
  path = os.path.join(parent, rev)
  subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-f", path, rev],
                 check=True, capture_output=True)
  return path


def run(tree, flags_, field, workdir):
  env = dict(os.environ, PYTHONPATH=tree)
  proc = subprocess.run([sys.executable, "-m", "jbatch", *flags_, f"--workdir={workdir}"],
                        cwd=tree, env=env, capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"{tree}: {proc.stderr[-2000:]}")
  records = [json.loads(line) for line in open(os.path.join(workdir, "results.jsonl"))]
  return {r["batch_size"]: r[field] for r in records}


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    trees = {"before": worktree(_BEFORE.value, tmp), "after": worktree(_AFTER.value, tmp)}
    seconds = {}  # (run, batch, side) -> [epoch s per round]
    for i in range(_ROUNDS.value):
      for name, (flags_, field) in ((n, RUNS[n]) for n in _RUNS.value):
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
          out = run(trees[side], flags_, field,
                    os.path.join(tmp, f"{side}-{name}-{i}".replace(" ", "")))
          for b, s in out.items():
            seconds.setdefault((name, b, side), []).append(s)
      print(f"round {i + 1}/{_ROUNDS.value} done", file=sys.stderr, flush=True)
    print(f"before {_BEFORE.value}, after {_AFTER.value}; median over {_ROUNDS.value} "
          "rounds of each run's median epoch")
    print(f"{'run':>8} {'batch':>7} {'before s':>9} {'after s':>8} {'after/before':>13}")
    sys.stdout.flush()
    for name, b in sorted({(n, b) for n, b, _ in seconds}, key=lambda k: (k[0], k[1])):
      before = float(np.median(seconds[(name, b, "before")]))
      after = float(np.median(seconds[(name, b, "after")]))
      print(f"{name:>8} {b:>7} {before:>9.4f} {after:>8.4f} {after / before:>13.3f}")
    for path in trees.values():
      if path != REPO:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", path],
                       capture_output=True)


if __name__ == "__main__":
  app.run(main)
