"""One jbatch run over several processes, through JAX's own multi-process runtime.

`join` connects to the coordinator (process 0 hosts it) with the command's
flags, or with none under a launcher JAX detects itself (SLURM, Open MPI);
on CPUs the cross-process collectives go through gloo. Then every process
runs the same sweep in lockstep over one mesh of every process's devices;
process 0 alone reads and writes the run folder and tells the others what it
decided (`agree`, through the coordinator's key-value store).

A process that dies is seen by a watcher thread in every other process (`watch`):
as soon as the coordinator's heartbeat no longer hears it, the watcher ends its
process with one line naming it. The main thread cannot always see it itself: a
collective fails at once (gloo sees the connection reset), but a barrier waits,
and Orbax waits at one after every checkpoint's commit. Recoverability is on so
that the runtime does not abort the survivors before they have said which
process was lost.
"""

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time

from jbatch.errors import UserError

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_KV_TIMEOUT_MS = 10 * 60 * 1000  # process 0 may spend minutes loading data before it answers
_WATCH_EVERY_S = 1.0
_leaving = threading.Event()  # every process has finished, or this one is leaving: stop watching
_watch = {"rounds": 0, "failure": None, "heartbeat_s": 20}


def check_flags(address, num_processes, process_id, workers):
  """The multi-process flags, before anything connects. Returns whether they ask for a
  multi-process job (False: one process, or a launcher's, see launcher_detected)."""
  given = address is not None or num_processes is not None or process_id is not None
  if not given:
    return False
  if workers is not None:
    raise UserError("--workers starts local workers of one sweep; it does not combine with "
                    "--coordinator_address/--num_processes/--process_id (one run over several "
                    "processes): give one or the other")
  if address is None or num_processes is None or process_id is None:
    raise UserError("a multi-process run needs all three of --coordinator_address=HOST:PORT "
                    "--num_processes=N --process_id=I")
  match = _ADDRESS.match(address)
  if not match or not 0 < int(match.group(2)) < 65536:
    raise UserError(f"--coordinator_address={address} is not HOST:PORT (e.g. "
                    "10.0.0.1:1234, node01:1234)")
  if num_processes < 1:
    raise UserError(f"--num_processes={num_processes}; give 1 or more")
  if not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} with --num_processes={num_processes}; give "
                    f"0 ... {num_processes - 1}")
  return True


def launcher_detected():
  """Whether a launcher JAX detects itself started several tasks of this command."""
  for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if int(os.environ.get(name, "1") or 1) > 1:
      return True
  return False


def join(address=None, num_processes=None, process_id=None, init_timeout=30,
         heartbeat_timeout=20):
  """Connects this process to the job (all None: the launcher's settings)."""
  if address is not None and process_id:
    _wait_for_coordinator(address, init_timeout)
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_enable_recoverability", True)
  try:
    jax.distributed.initialize(address, num_processes, process_id,
                               initialization_timeout=int(init_timeout),
                               heartbeat_timeout_seconds=int(heartbeat_timeout))
  except Exception as exc:  # the runtime's own errors carry pages of RPC detail
    where = f"the coordinator at {address}" if address else "the launcher's coordinator"
    raise UserError(f"could not join the job through {where} within --init_timeout="
                    f"{init_timeout}s ({_first_line(exc)}); start process 0 (which hosts it) "
                    "and check the address and port") from exc
  _watch["heartbeat_s"] = heartbeat_timeout


def joined():
  """Whether this process joined a multi-process job (without starting JAX if not)."""
  if "jax" not in sys.modules:
    return False
  return _client() is not None


def exit(code):
  """sys.exit, but a process of a job leaves at once: the runtime's own shutdown at exit
  races the other processes' and can abort this one (and the watcher's pending call)."""
  if not joined():
    sys.exit(code)
  _leaving.set()
  sys.stdout.flush()
  sys.stderr.flush()
  if is_primary():
    time.sleep(1)  # it hosts the coordinator: the others leave first, or their runtime aborts
  os._exit(code)


def _wait_for_coordinator(address, timeout):
  """Returns once process 0's coordinator accepts connections; UserError after timeout s.
  (The runtime's own client aborts the process when it cannot connect.)"""
  host, port = address.rsplit(":", 1)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
        return
    except OSError as exc:
      if time.monotonic() >= deadline:
        raise UserError(f"could not reach the coordinator at {address} within --init_timeout="
                        f"{timeout}s ({exc.strerror or exc}); start process 0 (which hosts it) "
                        "and check the address and port") from None
      time.sleep(0.25)


def process_count():
  import jax
  return jax.process_count()


def is_primary():
  """Whether this process reads and writes the run folder (process 0, or the only one)."""
  import jax
  return jax.process_index() == 0


def _client():
  from jax._src import distributed  # the coordinator's key-value store has no public API
  return distributed.global_state.client


def agree(name, decide):
  """decide() run on process 0; every process returns its (JSON) answer."""
  if process_count() == 1:
    return decide()
  client = _client()
  key = f"jbatch/agree/{name}"
  if is_primary():
    value = decide()
    client.key_value_set(key, json.dumps(value))
    return value
  return json.loads(client.blocking_key_value_get(key, _KV_TIMEOUT_MS))


def finished():
  """Every process has finished; process 0 (the coordinator's host) must not exit before
  the others have read its last answers (recoverable tasks have no shutdown barrier), and
  leaves through exit() once it has said where the report is."""
  if process_count() > 1:
    _client().wait_at_barrier("jbatch/finished", _KV_TIMEOUT_MS)
    _leaving.set()  # the others leave now: not lost
    if not is_primary():
      exit(0)


def revision():
  """A fingerprint of the jbatch source this process runs."""
  digest = hashlib.sha256()
  root = os.path.dirname(os.path.abspath(__file__))
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(folder, name)
      digest.update(os.path.relpath(path, root).encode())
      with open(path, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()[:16]


def check_same(config_json):
  """Every process runs the same config and jbatch source: UserError naming the one that
  differs from process 0 (every process raises it)."""
  if process_count() == 1:
    return
  import jax
  client, me = _client(), jax.process_index()
  mine = {"config": hashlib.sha256(config_json.encode()).hexdigest()[:16],
          "revision": revision()}
  client.key_value_set(f"jbatch/fingerprint/{me}", json.dumps(mine))
  prints = {i: json.loads(client.blocking_key_value_get(f"jbatch/fingerprint/{i}",
                                                        _KV_TIMEOUT_MS))
            for i in range(process_count())}
  client.wait_at_barrier("jbatch/fingerprints", _KV_TIMEOUT_MS)  # all have read them all
  for what, change in (("revision", "the same jbatch checkout"),
                       ("config", "the same --config file and overrides")):
    differ = [i for i, p in prints.items() if p[what] != prints[0][what]]
    if differ:
      names = ", ".join(map(str, differ))
      raise UserError(f"process {names} runs a different {'jbatch ' if what == 'revision' else ''}"
                      f"{what} than process 0 ({prints[differ[0]][what]} vs "
                      f"{prints[0][what]}); give every process {change}")


def watch(report):
  """Starts the watcher of a multi-process run: a daemon thread that, once the coordinator
  no longer hears some process, calls report(line) and ends this process with exit status
  3, wherever its main thread is waiting (Orbax's barrier after a checkpoint's commit
  waits up to 10 minutes: tests/test_distributed.py's survivor hung there in 1 of 14
  kills under load). get_live_nodes returns once every live process has asked (a dead
  one after the heartbeat timeout), so every process's watcher asks once a second and
  they meet; the heartbeat is the runtime's own, kept by a thread of its own, so a busy
  process is never taken for a lost one."""
  import jax
  everyone, me = list(range(process_count())), jax.process_index()

  def run():
    while not _leaving.is_set():
      try:
        live = set(_client().get_live_nodes(everyone))
        gone = [i for i in everyone if i not in live]
      except Exception:  # the coordinator itself (process 0) is gone
        gone = [0] if me != 0 else []
      _watch["rounds"] += 1
      if gone and not _leaving.is_set():
        report(_lost_line(gone, len(everyone), _watch["failure"]))
        exit(3)
      _leaving.wait(_WATCH_EVERY_S)

  if len(everyone) > 1:
    threading.Thread(target=run, name="jbatch-watch", daemon=True).start()


def lost(exc):
  """The main thread's step of a multi-process run failed with exc: if a process was lost,
  the watcher ends this process with the line (naming exc too) while this waits for its
  verdict; returns once a whole round of the watcher began after the failure and found
  every process alive, or after twice the heartbeat timeout (then the failure is this
  process's own)."""
  _watch["failure"] = _first_line(exc)
  start = _watch["rounds"]
  deadline = time.monotonic() + 2 * _watch["heartbeat_s"] + 10
  while _watch["rounds"] < start + 2 and time.monotonic() < deadline:
    time.sleep(0.1)


def _lost_line(gone, count, failure):
  cause = f" ({failure})" if failure else ""
  return (f"process {', '.join(map(str, gone))} of {count} was lost{cause}; the results "
          "written so far are intact: run the same command again on every process to "
          "resume from the last checkpoint")


def _first_line(exc):
  text = str(exc).strip().splitlines()
  return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
