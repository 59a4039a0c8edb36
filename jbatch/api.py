"""jbatch from Python: `run_study` runs a study on a workload object (no file needed, so a
notebook can use it) and returns its records; `execute` is what the jbatch command runs
once its config is validated.

  from jbatch import api
  from jbatch.studies import critical_batch
  config = critical_batch.default_config()
  config.batch_sizes = (16, 64, 256)
  records = api.run_study("critical_batch", my_workload, "runs/mine", config)
"""

import contextlib
import dataclasses
import hashlib
import json
import os

import numpy as np

from jbatch import distributed
from jbatch.errors import UserError
from jbatch.results import claims, workdir as workdir_lib


def run_study(study, workload, workdir, config=None):
  """Runs `study` (a name: throughput, accuracy, dynamics, critical_batch) on `workload`
  (jbatch.workloads.Workload) with `config` (default: the study's default_config) in
  `workdir`, resuming what a run there finished; returns the study's records. Bad input
  raises UserError before any work, with the line the jbatch command would print."""
  from jbatch.results import store
  from jbatch.studies import STUDIES, plan
  if study not in STUDIES:
    raise UserError(f"unknown study {study!r}; choose one of {', '.join(sorted(STUDIES))}")
  config = config if config is not None else STUDIES[study].default_config()
  config = config.copy_and_resolve_references()
  config.study = study
  workload = identified(workload, config)
  studies = plan(config, workload)
  workdir_lib.check_writable(workdir)
  execute(config, json.dumps(config.to_dict(), sort_keys=True, default=str), studies, workdir)
  ids = {p["run_id"] for p in STUDIES[study].grid(studies[0][1], *_grid_args(
      STUDIES[study], studies[0][1], studies[0][2]))}
  return [r for r in store.read(workdir) if r["run_id"] in ids]


def _grid_args(module, config, workload):
  import inspect
  from jbatch import workloads
  if len(inspect.signature(module.grid).parameters) == 1:
    return ()
  return (workloads.load_data(config, workload).num_train,)


def identified(workload, config=None):
  """An in-memory workload with its origin ('python:NAME') and a hash of its functions'
  source and of its data, so that changed code or data never resumes old records. It is
  tried as a file's is (workloads/user.check), in the config's precision and target."""
  from jbatch import workloads
  from jbatch.workloads import user
  if workload.source_hash:
    return workload
  workload = dataclasses.replace(workload, source=f"python:{workload.name}")
  data = user.check(workload) if config is None else user.check(
      workload, target=config.target.metric or None, seed=config.seed,
      precision=config.get("precision", "float32"))
  digest = hashlib.sha1(user.object_hash(workload).encode())
  for a in (data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y):
    if a is not None:
      digest.update(np.ascontiguousarray(a).tobytes())
  named = dataclasses.replace(workload, source_hash=digest.hexdigest()[:12])
  workloads.remember_data(named, data)
  return named


def execute(config, config_json, studies, workdir):
  """Runs the validated studies [(module, config, workload)] as one worker of the folder's
  sweep; only process 0 of a multi-process run touches the folder. A UserError found once
  data was loaded (or a full disk) leaves the folder as it was and is raised again."""
  from jbatch.results import report, sweep
  from jbatch.studies import STUDIES
  primary = distributed.is_primary()
  snapshot = workdir_lib.Snapshot(workdir) if primary else None
  if primary:
    os.makedirs(workdir, exist_ok=True)
  try:
    with (claims.Worker(workdir, config_json) if primary else
          contextlib.nullcontext()) as worker, sweep.shared(worker):
      if primary:
        tmp = os.path.join(workdir, f"config.json.tmp{os.getpid()}")
        with open(tmp, "w") as f:
          json.dump(config.to_dict(), f, indent=2, default=str)
        os.replace(tmp, os.path.join(workdir, "config.json"))
      # The report after every study that added records (a long sweep's partial report),
      # and once at the end if none did: drawing it takes seconds (its plots, the
      # critical-batch bootstrap), which a rerun of a finished sweep paid once per study.
      written, records = False, _records_size(workdir)
      for module, cfg, workload in studies:
        module.run(cfg, workload, workdir)
        if primary and _records_size(workdir) != records:
          report.write(workdir, STUDIES)
          written, records = True, _records_size(workdir)
      if primary and not written:
        report.write(workdir, STUDIES)
  except claims.Busy:
    raise
  except UserError:
    if primary and not claims.any_worker(workdir):  # others' sweep goes on: leave it be
      snapshot.restore()
    raise


def _records_size(workdir):
  from jbatch.results import store
  path = os.path.join(workdir, store.RESULTS_FILE)
  return os.path.getsize(path) if os.path.exists(path) else 0
