"""A run folder's safety: writable before any work, and left as it was when a run stops on
bad input found late. Several jbatch processes on one folder share its sweep
(results/claims.py)."""

import contextlib
import os
import sys
import tempfile

from jbatch.errors import UserError

DEFAULT_COMPILE_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                     os.path.expanduser("~/.cache"), "jbatch", "xla")

def check_writable(workdir, name="--workdir"):
  """Raises UserError unless workdir is, or can be made, a folder this process writes to;
  name: what the messages call it."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"{name}={workdir} is a file, not a folder; give a folder")
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f"{name}={workdir} lies under {parent}, which is a file; give another "
                    "folder")
  try:  # a real write: permission bits say nothing for root or a read-only file system
    fd, probe = tempfile.mkstemp(dir=parent, prefix=".jbatch-write-test-")
    os.close(fd)
    os.remove(probe)
  except OSError as exc:
    raise UserError(f"{name}={workdir}: cannot write in {parent} ({exc.strerror}); give a "
                    "writable folder") from exc


class Snapshot:
  """What a run may change before it finds bad input in its data: config.json, and whether
  the folder existed. restore() puts them back when no record was written meanwhile."""

  def __init__(self, workdir):
    self.workdir = workdir
    self.existed = os.path.isdir(workdir)
    self.config = _read(os.path.join(workdir, "config.json"))
    self.results_size = _size(os.path.join(workdir, "results.jsonl"))

  def restore(self):
    if _size(os.path.join(self.workdir, "results.jsonl")) != self.results_size:
      return  # records were written: config.json describes them
    config = os.path.join(self.workdir, "config.json")
    if self.config is None:
      with contextlib.suppress(FileNotFoundError):
        os.remove(config)
    else:
      with open(config, "wb") as f:
        f.write(self.config)
    if not self.existed:
      with contextlib.suppress(OSError):
        os.rmdir(self.workdir)  # only if nothing else is in it


def _read(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    return None


def _size(path):
  try:
    return os.path.getsize(path)
  except FileNotFoundError:
    return None


def use_compile_cache(path):
  """Turns on JAX's persistent compilation cache at path; a folder that cannot be used is a
  warning, never a failure (a corrupt entry JAX itself reads as a miss and compiles anew)."""
  if not path:
    return
  try:
    check_writable(path, "--compile_cache")
    os.makedirs(path, exist_ok=True)
  except (OSError, UserError) as e:
    print(f"[jbatch] warning: compile cache {path} cannot be used ({e}); compiling without it",
          file=sys.stderr)
    return
  import jax
  settings = {"jax_compilation_cache_dir": path,
              # Every program, however quick to compile (JAX's default threshold is 1 s):
              # loading one is cheaper than compiling it; with a 0.2 s threshold the
              # quickstart's second run compiled 129 small programs again, 4.7 s.
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  for name, value in settings.items():
    jax.config.update(name, value)
    os.environ[name.upper()] = str(value)  # for the studies' child processes (determinism)
