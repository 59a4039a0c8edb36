"""One command for a lent GPU: the GPU side of the studies, side by side with this machine's
CPU, written as one markdown section for BENCHMARKS.md.

  python scripts/gpu_check.py [--workdir=runs/gpu_check] [--out=runs/gpu_check.md]
  python scripts/gpu_check.py --device_kind=cpu --tiny   # the plumbing, on a CPU, in seconds

Runs, through the studies themselves (records in --workdir, resumable): the seeds/004
grid (fused JAX and PyTorch eager, batch 100 ... full) on the GPU and the CPU, with the
CPU/GPU crossover and the largest batch that fits (real out-of-memory trials on the GPU
against XLA's plan); determinism on and off; steps to target with the LR trials vmapped
on the GPU, timed per step on both devices. Then prints the section, headed by the
device's name and the versions. Also MobileNetV2 at 224x224, batch 256, in bfloat16
(`precision=bfloat16`) against PyTorch channels-last with autocast, eager and
torch.compile (its own run folder, WORKDIR/mobilenet224), and per-example gradient norms
against a plain step (scripts/bench_per_example.py on the device). On a machine without
the device kind it says so in one line and exits 0.
"""

import os
import subprocess
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


def mobilenet(kind, tiny, data_dir):
  """Throughput of MobileNetV2 224 at batch 256 in bfloat16, JAX against PyTorch."""
  from jbatch.studies import throughput
  t = throughput.default_config()
  t.model, t.precision, t.device_kinds = "mobilenet_v2", "bfloat16", (kind,)
  t.mobilenet_v2.variant = "imagenet"
  t.synthetic.input_shape, t.synthetic.num_train, t.synthetic.num_test = (224, 224, 3), 2048, 256
  t.batch_sizes, t.epochs, t.warmup_epochs = (256,), 2, 1
  t.variants = ("jax_fused", "torch_eager", "torch_compile")
  t.pow2_probe, t.max_batch, t.data_dir = (), False, data_dir
  if tiny:  # the plumbing: compiling MobileNetV2 (or torch.compile) takes a CPU minute
    t.model, t.cnn.channels, t.cnn.hidden, t.synthetic.input_shape = "cnn", (4,), 8, (8, 8, 3)
    t.synthetic.num_train, t.batch_sizes, t.epochs = 128, (64,), 1
    t.variants = ("jax_fused", "torch_eager")
  return t


def per_example(kind, tiny):
  """scripts/bench_per_example.py on the device: its printed table."""
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_per_example.py")
  args = (["--models=cnn", "--batch_sizes=32", "--rounds=1", "--repeats=1", "--notorch"]
          if tiny else ["--rounds=2"])
  proc = subprocess.run([sys.executable, script, f"--device_kind={kind}", *args],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    return f"bench_per_example.py failed:\n{proc.stderr[-2000:]}"
  return proc.stdout.strip()


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
  from jbatch.results import claims, report, sweep, workdir as workdir_lib
  from jbatch import workloads
  from jbatch.studies import STUDIES, plan
  from jbatch.train import parallel
  if not parallel.devices_of_kind(_KIND.value):
    print(f"gpu_check: no {_KIND.value} device on this machine; nothing to check")
    return 0
  config = suite(_KIND.value, _TINY.value, os.environ.get("JBATCH_DATA_DIR", ""))
  workdir = _WORKDIR.value
  studies = plan(config)  # validated before any work, as the jbatch command does
  workdir_lib.use_compile_cache(workdir_lib.DEFAULT_COMPILE_CACHE)  # as the jbatch command
  mobile = mobilenet(_KIND.value, _TINY.value, os.environ.get("JBATCH_DATA_DIR", ""))
  mobile_dir = os.path.join(workdir, "mobilenet224")
  mobile_workload = workloads.from_config(mobile)
  studies.append((STUDIES["throughput"], mobile, mobile_workload))
  STUDIES["throughput"].validate(mobile, mobile_workload)
  bodies = []
  for folder, group in ((workdir, studies[:-1]), (mobile_dir, studies[-1:])):
    os.makedirs(folder, exist_ok=True)
    config_json = json.dumps([c.to_dict() for _, c, _ in group], sort_keys=True, default=str)
    with claims.Worker(folder, config_json) as worker, sweep.shared(worker):
      for module, cfg, workload in group:
        module.run(cfg, workload, folder)
    report.write(folder, STUDIES)
    with open(os.path.join(folder, "report.md")) as f:
      bodies.append(f.read().replace("# jbatch report\n", "").replace("\n## ", "\n### "))
  section = (header(_KIND.value) + bodies[0] +
             "\n### MobileNetV2 224x224, batch 256, bfloat16: JAX against PyTorch channels-last "
             "with autocast\n" + bodies[1] +
             "\n### Per-example gradient norms on the device\n\n```\n" +
             per_example(_KIND.value, _TINY.value) + "\n```\n")
  out = _OUT.value or os.path.join(workdir, "gpu_check.md")
  with open(out, "w") as f:
    f.write(section)
  print(section)
  print(f"gpu_check: section written to {out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  app.run(main)
