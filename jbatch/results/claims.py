"""One sweep shared by several workers: every point is claimed before it runs.

Workers are jbatch processes given the same config and --workdir, on one
machine or on hosts that share the folder. Each registers in DIR/workers/
(host, pid, start time, config fingerprint); a worker with another config
is refused while one is alive, since two configs on one folder would delete
each other's checkpoints. A point is claimed by creating
DIR/claims/<run id>.json with O_EXCL; its worker appends the point's record
and only then removes the claim, so a point is recorded once.

A worker touches its files every HEARTBEAT seconds. A claim is the live
worker's while its process exists (same host), or while it was touched within
STALE seconds (another host); a claim of a worker that is gone is taken over,
under a short flock of DIR so that two workers never both take it.
"""

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
import threading
import time

from jbatch.errors import UserError

HEARTBEAT = 10
STALE = 120


class Busy(UserError):
  """A live worker with another config holds the folder."""


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's live process
    return True
  try:  # a killed process its parent has not reaped yet is gone too
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def _read(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _safe(run_id):
  return run_id.replace("/", "_")


class Worker:
  """This process's part in a shared sweep; use as a context manager."""

  def __init__(self, workdir, config_json):
    self.workdir = workdir
    self.claims_dir = os.path.join(workdir, "claims")
    self.workers_dir = os.path.join(workdir, "workers")
    self.me = {"host": socket.gethostname(), "pid": os.getpid(),
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                   timespec="seconds"),
               "config": hashlib.sha256(config_json.encode()).hexdigest()[:16]}
    self.file = os.path.join(self.workers_dir, f"{self.me['host']}.{self.me['pid']}.json")
    self.held = set()
    self._stop = threading.Event()

  def live(self, path):
    """The owner recorded in a worker or claim file, if that worker is still alive."""
    owner = _read(path)
    try:
      age = time.time() - os.path.getmtime(path)
    except FileNotFoundError:
      return None
    if owner is None:  # being written right now, or damaged: alive until it goes stale
      return {} if age < STALE else None
    if owner.get("host") == self.me["host"]:  # its pid says, however long a step holds it
      return owner if _alive(owner.get("pid", -1)) else None
    return owner if age < STALE else None

  @contextlib.contextmanager
  def _flock(self):
    """The run folder itself, flocked: no lock file is left behind."""
    fd = os.open(self.workdir, os.O_RDONLY)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      yield
    finally:
      os.close(fd)  # releases the lock

  def __enter__(self):
    os.makedirs(self.workers_dir, exist_ok=True)  # and the run folder
    with self._flock():
      self._remove_dead(self.workers_dir)
      for name in sorted(os.listdir(self.workers_dir)):
        owner = self.live(os.path.join(self.workers_dir, name))
        if owner and owner.get("config") != self.me["config"]:
          raise Busy(f"{self.workdir} is in use by jbatch pid {owner.get('pid')} on "
                     f"{owner.get('host')} since {owner.get('started')} with another config; "
                     "give the same config to share its sweep, wait for it to finish, or give "
                     f"another --workdir (delete {self.workers_dir}/{name} if that process "
                     "is gone)")
      _write_json(self.file, self.me)
    threading.Thread(target=self._beat, daemon=True).start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    for run_id in list(self.held):
      self.release(run_id)
    with self._flock():
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.file)
      self._remove_dead(self.workers_dir)
      self._remove_dead(self.claims_dir)
      for folder in (self.claims_dir, self.workers_dir):
        with contextlib.suppress(OSError):
          os.rmdir(folder)  # only if empty: no other worker, no claim left

  def _remove_dead(self, folder):
    """The files that workers which are gone left in folder."""
    with contextlib.suppress(FileNotFoundError):
      for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if self.live(path) is None:
          with contextlib.suppress(FileNotFoundError):
            os.remove(path)

  def _beat(self):
    while not self._stop.wait(HEARTBEAT):
      for path in [self.file] + [self._claim_path(r) for r in list(self.held)]:
        with contextlib.suppress(OSError):
          os.utime(path)

  def _claim_path(self, run_id):
    return os.path.join(self.claims_dir, _safe(run_id) + ".json")

  def claim(self, run_id):
    """Whether this worker now holds run_id (False: a live worker does)."""
    os.makedirs(self.claims_dir, exist_ok=True)
    path = self._claim_path(run_id)
    for _ in range(2):
      try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        with self._flock():  # a takeover: only one worker may remove the dead one's claim
          if self.live(path) is not None:
            return False
          with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(dict(self.me, run_id=run_id), f)
      self.held.add(run_id)
      return True
    return False

  def release(self, run_id):
    self.held.discard(run_id)
    with contextlib.suppress(FileNotFoundError):
      os.remove(self._claim_path(run_id))

  def others_alive(self):
    """Whether another worker of this folder is alive."""
    if not os.path.isdir(self.workers_dir):
      return False
    return any(self.live(os.path.join(self.workers_dir, n)) is not None
               for n in os.listdir(self.workers_dir)
               if os.path.join(self.workers_dir, n) != self.file)


def any_worker(workdir):
  """Whether a worker (alive, or gone without cleaning up) is registered in workdir."""
  return os.path.isdir(os.path.join(workdir, "workers"))


def _write_json(path, value):
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f)
  os.replace(tmp, path)
