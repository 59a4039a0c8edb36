"""S2, the cost of determinism (seeds/000): the same training run with and without XLA's
deterministic-ops flag, each run in a process of its own.

XLA reads XLA_FLAGS once, when the backend starts, so each run is a fresh
`python -m jbatch.studies.determinism_run` with the flag set or not
(`--xla_gpu_deterministic_ops=true`, the JAX counterpart of PyTorch's
cudnn.deterministic; on a CPU XLA is deterministic either way). For each mode
and device kind present: `runs` runs with the same seed, ms per step, and
whether all of them end with bitwise-identical parameters.
"""

import json
import os
import subprocess
import sys

import numpy as np

from jbatch import config as config_lib, workloads
from jbatch.errors import UserError
from jbatch.results import sweep
from jbatch.studies import determinism_report
from jbatch.train import optim, parallel, plan as plan_lib

NAME = "determinism"
MODES = {"default": "", "deterministic": "--xla_gpu_deterministic_ops=true"}


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.dataset = "synthetic"
  c.synthetic.num_train = 8_192
  c.synthetic.input_shape = (16, 16, 3)
  c.model = "cnn"
  c.cnn.channels = (16, 32)
  c.cnn.hidden = 64
  c.cnn.batchnorm = True
  c.batch_sizes = (256,)
  c.steps = 20
  c.runs = 2
  c.modes = tuple(MODES)
  c.device_kinds = ("cpu", "gpu")  # those present are used
  return c


def validate(config, workload):
  if not workload.source or workload.source.startswith("python:"):
    raise UserError(f"the determinism study trains in fresh processes, which load the "
                    f"workload from its file or module; workload {workload.name} has none: "
                    "give it as --config.workload=FILE.py:NAME")
  num_train = workloads.check(config, workload)
  optim.check(config.optimizer)
  for mode in config_lib.names(config.modes):
    if mode not in MODES:
      raise UserError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
  if config.runs < 2 or config.steps < 1:
    raise UserError(f"runs={config.runs}, steps={config.steps}: give runs >= 2 (to compare) "
                    "and steps >= 1")
  if not parallel.present_kinds(config_lib.names(config.device_kinds)):
    raise UserError(f"none of device_kinds {tuple(config.device_kinds)} is present; present: "
                    f"{', '.join(parallel.available_kinds())}")
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train)
    plan_lib.check_batch_sizes(config, sizes, num_train)


def grid(config, num_train):
  fp = config_lib.fingerprint(config, ignore=("study", "modes", "device_kinds", "batch_sizes"))
  return [{"run_id": f"{NAME}/{kind}/b{b}/{mode}/{fp}", "framework": "jax", "device_kind": kind,
           "batch_size": b, "mode": mode}
          for kind in parallel.present_kinds(config_lib.names(config.device_kinds)) for b in config_lib.batch_sizes(config, num_train)
          for mode in config_lib.names(config.modes)]


def run(config, workload, workdir):
  num_train = workloads.check(config, workload)
  if num_train is None:
    num_train = workloads.load_data(config, workload).num_train
  sweep.run(NAME, config, workdir, grid(config, num_train),
            lambda p: {**workloads.record_fields(workload), **_measure(config, p)})


def child_env(mode, kind):
  """The environment of one run: XLA_FLAGS with or without the flag, one platform."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if "deterministic_ops" not in f]
  if MODES[mode]:
    flags.append(MODES[mode])
  env["XLA_FLAGS"] = " ".join(flags)
  env["JAX_PLATFORMS"] = {"gpu": "cuda"}.get(kind, kind)
  return env


def _measure(config, point):
  job = {"config": config.to_dict(), "batch_size": point["batch_size"], "kind": point["device_kind"]}
  results = []
  for i in range(config.runs):
    sweep.progress(f"{point['run_id']}: run {i + 1}/{config.runs} in a new process")
    proc = subprocess.run([sys.executable, "-m", "jbatch.studies.determinism_run", json.dumps(job)],
                          capture_output=True, text=True, env=child_env(point["mode"],
                                                                        point["device_kind"]))
    if proc.returncode != 0:
      raise RuntimeError(f"run {i + 1} failed: {proc.stderr.strip().splitlines()[-1:]}")
    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  hashes = [r["params_sha256"] for r in results]
  return {"identical": len(set(hashes)) == 1, "params_sha256": hashes,
          "step_ms_median": float(np.median([r["step_ms"] for r in results])),
          "step_ms": [r["step_ms"] for r in results], "xla_flags": results[0]["xla_flags"],
          "steps": config.steps, "runs": config.runs, "device_name": results[0]["device_name"],
          "n_devices": results[0]["n_devices"], "compile_s": results[0]["compile_s"]}


def report(records, workdir):
  return determinism_report.report(records, workdir)
