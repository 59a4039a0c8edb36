"""One command for a lent GPU: the GPU side of the studies, side by side with this machine's
CPU, written as one markdown section for BENCHMARKS.md.

  python scripts/gpu_check.py [--workdir=runs/gpu_check] [--out=runs/gpu_check.md]
  python scripts/gpu_check.py --device_kind=cpu --tiny   # the plumbing, on a CPU, in seconds

Runs, through the studies themselves (records in --workdir, resumable): the seeds/004
grid (fused JAX and PyTorch eager, batch 100 ... full) on the GPU and the CPU, with the
CPU/GPU crossover and the largest batch that fits (real out-of-memory trials on the GPU
against XLA's plan); determinism on and off; steps to target with the LR trials vmapped
on the GPU, timed per step on both devices. Then prints the section, headed by the
device's name and the versions. On a machine without the device kind it says so in one
line and exits 0. Not yet in it: MobileNetV2 224 against PyTorch channels-last with
autocast and torch.compile, per-example norms (scripts/bench_per_example.py is CPU-only).
"""

import os
import sys

from absl import app, flags

_KIND = flags.DEFINE_string("device_kind", "gpu", "the accelerator to check (cpu: plumbing)")
_WORKDIR = flags.DEFINE_string("workdir", "runs/gpu_check", "run folder for the records")
_OUT = flags.DEFINE_string("out", "", "markdown file to write (default: WORKDIR/gpu_check.md)")
_TINY = flags.DEFINE_bool("tiny", False, "tiny sizes: the plumbing in seconds")


def suite(kind, tiny, data_dir):
  """The suite config: throughput, determinism and critical_batch on `kind` (and the CPU)."""
  import ml_collections
  from jbatch import config as config_lib
  from jbatch.studies import determinism, throughput
  kinds = tuple(dict.fromkeys(("cpu", kind)))
  t = throughput.default_config()
  t.device_kinds = kinds
  t.batch_sizes = (100, 1000, 10000, "full")
  t.variants = ("jax_fused", "torch_eager")
  d = determinism.default_config()
  d.device_kinds = (kind,)
  here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments", "x.py")
  cb = config_lib.from_file(here, "critical_batch_small")
  cb.device_kind, cb.speed.device_kinds = kind, kinds
  cb.trials_vmapped, cb.probes.enabled, cb.num_devices = True, False, 1
  cb.trials = 8
  if not os.path.exists(os.path.join(data_dir or "", "mnist")):
    cb.dataset, cb.train_subset = "synthetic", 0  # no MNIST files on this machine
    cb.synthetic.num_train, cb.synthetic.input_shape = 4_608, (32,)
  if tiny:
    t.synthetic.num_train, t.batch_sizes, t.epochs, t.pow2_probe = 4_000, (100, 1000), 1, ()
    t.memory_budget = 1 << 26
    d.synthetic.num_train, d.steps, d.cnn.channels = 512, 2, (4,)
    d.modes = ("deterministic",)  # the on/off pair is the GPU run's; one mode shows the plumbing
    cb.batch_sizes, cb.trials, cb.max_examples, cb.speed.steps = (64, 512), 2, 8_192, 2
    cb.max_batch = False
  c = ml_collections.ConfigDict()
  c.study, c.suite = "suite", ("throughput", "determinism", "critical_batch")
  c.throughput, c.determinism, c.critical_batch = t, d, cb
  for sub in (t, d, cb):
    sub.data_dir = data_dir
  return c


def header(kind):
  import jax
  from jbatch.results import record
  from jbatch.train import parallel
  device = parallel.devices_of_kind(kind)[0]
  v = record.versions()
  return (f"## GPU check: {device.device_kind} ({kind}), {os.cpu_count()} host CPUs\n\n"
          f"`python scripts/gpu_check.py{' --device_kind=' + kind if kind != 'gpu' else ''}`; "
          f"jax {jax.__version__}, flax {v['flax']}, optax {v['optax']}, python {v['python']}"
          + (f", torch {v['torch']}" if "torch" in v else "") + f"; git {record.git_rev()}.\n")


def main(_):
  import json
  from jbatch.results import claims, report, sweep
  from jbatch.studies import STUDIES, plan
  from jbatch.train import parallel
  if not parallel.devices_of_kind(_KIND.value):
    print(f"gpu_check: no {_KIND.value} device on this machine; nothing to check")
    return 0
  config = suite(_KIND.value, _TINY.value, os.environ.get("JBATCH_DATA_DIR", ""))
  workdir = _WORKDIR.value
  studies = plan(config)  # validated before any work, as the jbatch command does
  os.makedirs(workdir, exist_ok=True)
  config_json = json.dumps(config.to_dict(), sort_keys=True, default=str)
  with claims.Worker(workdir, config_json) as worker, sweep.shared(worker):
    for module, cfg in studies:
      module.run(cfg, workdir)
    report.write(workdir, STUDIES)
  with open(os.path.join(workdir, "report.md")) as f:
    body = f.read().replace("# jbatch report\n", "").replace("\n## ", "\n### ")
  section = header(_KIND.value) + body
  out = _OUT.value or os.path.join(workdir, "gpu_check.md")
  with open(out, "w") as f:
    f.write(section)
  print(section)
  print(f"gpu_check: section written to {out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  app.run(main)
