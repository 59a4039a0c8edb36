"""Fields every record carries, so that a line of results.jsonl describes itself."""

import datetime
import functools
import os
import platform
import subprocess
import sys

import jax


@functools.cache
def git_rev():
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                         text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def versions():
  """Library versions; optional libraries only if this process already imported them."""
  import flax
  import numpy
  import optax
  out = {"python": platform.python_version(), "jax": jax.__version__,
         "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
         "flax": flax.__version__, "optax": optax.__version__, "numpy": numpy.__version__}
  for name in ("torch", "tensorflow", "grain"):
    module = sys.modules.get(name)
    if module is not None:
      out[name] = getattr(module, "__version__", "unknown")
  return out


def now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def base(study, run_id, config, *, framework, device_kind, device_name, n_devices, batch_size,
         seed, started, seconds, status="ok", n_processes=1):
  """seed: the grid point's own seed (config.seeds), or config.seed for studies without
  a seed axis. A user workload's model and dataset are its FILE.py:NAME (the record's
  workload fields name it too)."""
  user = config.get("workload", "")
  return {"study": study, "run_id": run_id, "status": status, "framework": framework,
          "device_kind": device_kind, "device_name": device_name, "n_devices": n_devices,
          "n_processes": n_processes, "model": user or config.model,
          "dataset": user or config.dataset,
          "batch_size": batch_size, "precision": config.get("precision", "float32"),
          "seed": seed, "last_batch": config.last_batch, "config": config.to_dict(),
          "versions": versions(), "git_rev": git_rev(), "host_cpus": os.cpu_count(),
          # The cores this process may use: fewer than host_cpus under --workers, where
          # timings are of a worker's own cores.
          "cpus_allowed": len(os.sched_getaffinity(0)),
          # Other work on the machine skews timings: the 1-minute load when the point ended.
          "host_load_1m": round(os.getloadavg()[0], 2),
          "started": started, "seconds": round(seconds, 3)}
