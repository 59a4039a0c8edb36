"""A run folder's safety: writable before any work, one jbatch at a time, and left as it was
when a run stops on bad input found late.

The lock is `DIR/.jbatch.lock`, created with O_EXCL and holding the host, pid
and start time of its owner: a second jbatch on the same folder refuses at once
with a line naming the owner (two runs would restore or delete each other's
checkpoints). A lock whose process is gone (same host, no such pid) is taken
over.
"""

import contextlib
import datetime
import json
import os
import socket
import tempfile

from jbatch.errors import UserError

LOCK = ".jbatch.lock"


class Busy(UserError):
  """Another live jbatch holds the folder."""


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


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  return True


@contextlib.contextmanager
def locked(workdir):
  """Holds DIR's lock for the body; raises UserError when another live jbatch holds it."""
  path = os.path.join(workdir, LOCK)
  me = {"host": socket.gethostname(), "pid": os.getpid(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      try:
        with open(path) as f:
          owner = json.load(f)
      except (OSError, ValueError):
        owner = {}
      if owner.get("host") == me["host"] and owner.get("pid") and not _alive(owner["pid"]):
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)  # left by a process that is gone: take it over
        continue
      raise Busy(f"{workdir} is in use by jbatch pid {owner.get('pid')} on "
                      f"{owner.get('host')} since {owner.get('started')}; wait for it to "
                      f"finish or give another --workdir (delete {path} if that process is "
                      "gone)") from None
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    break
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


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
