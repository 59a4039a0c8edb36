"""Runs a study's grid: skips finished points, claims each point before it runs (so that
several workers share the grid, results/claims.py), records failures as statuses, shows
progress.

A point that raises out-of-memory is recorded as `oom`, any other exception
as `error` (with its message), and the sweep goes on; a point whose record
already says ok, diverged or oom is never run again. A UserError (bad input
found only once the data is loaded) stops the sweep: it would fail every point.
"""

import contextlib
import json
import os
import sys
import time
import traceback

from jbatch import distributed
from jbatch.errors import UserError
from jbatch.results import claims, record as record_lib, store

OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory", "OutOfMemory")


def progress(message):
  if distributed.is_primary():
    worker = os.environ.get("JBATCH_WORKER")
    print(f"[jbatch{' w' + worker if worker else ''}] {message}", file=sys.stderr, flush=True)


def is_oom(exc):
  text = f"{type(exc).__name__}: {exc}"
  return any(m in text for m in OOM_MARKERS)


def run(study, config, workdir, points, run_point):
  """points: dicts with run_id, framework, device_kind, batch_size (and anything else).

  run_point(point) returns the study's fields plus device_name and n_devices,
  and may set status (e.g. 'diverged'). Points are claimed one at a time
  (results/claims.py), so several workers share the grid; this one returns once
  every point is recorded. In a multi-process run process 0 claims and records,
  and every process runs the point it chose.
  """
  ids = {p["run_id"] for p in points}
  by_id = {p["run_id"]: p for p in points}
  with _worker(workdir, config) as worker:
    since = record_lib.now()
    skipped = distributed.agree(f"{study}/skipped",
                                lambda: len(ids & store.finished_run_ids(workdir)))
    if skipped:
      progress(f"{study}: {skipped} of {len(points)} points already done, skipped")
    t_sweep, ran, waiting, turn = time.perf_counter(), 0, False, 0
    while True:
      turn += 1
      choice = distributed.agree(f"{study}/turn{turn}",
                                 lambda: _next_point(worker, workdir, points, since))
      if choice is None:
        return
      if choice == WAIT:
        if not waiting:
          progress(f"{study}: waiting for the points other workers are running")
        waiting = True
        time.sleep(POLL)
        continue
      waiting, point = False, by_id[choice]
      try:
        rec = _run_point(study, config, workdir, point, run_point)
      finally:
        if worker is not None:
          worker.release(choice)
      ran += 1
      elapsed = time.perf_counter() - t_sweep
      left = elapsed / ran * (len(points) - skipped - ran)
      progress(f"{study} {ran + skipped}/{len(points)} {point['run_id']}: {rec['status']} in "
               f"{rec['seconds']:.1f}s{_headline(rec)}; about {left:.0f}s left")


WAIT = "wait"
POLL = 0.5


@contextlib.contextmanager
def _worker(workdir, config):
  """The command's worker (set by `shared`), or one for this sweep alone; None on the
  processes of a multi-process run other than 0, which never touch the folder."""
  if not distributed.is_primary():
    yield None
  elif _SHARED:
    yield _SHARED[-1]
  else:
    with claims.Worker(workdir, json.dumps(config.to_dict(), sort_keys=True,
                                           default=str)) as worker:
      yield worker


_SHARED = []


@contextlib.contextmanager
def shared(worker):
  """Every sweep in the body claims its points as `worker` (the jbatch command's)."""
  _SHARED.append(worker)
  try:
    yield worker
  finally:
    _SHARED.pop()


def _next_point(worker, workdir, points, since):
  """The run id this worker claimed next; WAIT while only other live workers' points are
  left; None when every point is recorded (or failed in this sweep)."""
  done = store.finished_run_ids(workdir, errors_since=since)
  busy = False
  for point in points:
    run_id = point["run_id"]
    if run_id in done:
      continue
    if worker.claim(run_id):
      if run_id in store.finished_run_ids(workdir, errors_since=since):
        worker.release(run_id)  # recorded by another worker between our read and claim
        continue
      return run_id
    busy = True
  return WAIT if busy else None


def _run_point(study, config, workdir, point, run_point):
  started, t0 = record_lib.now(), time.perf_counter()
  try:
    fields = run_point(point)
  except (KeyboardInterrupt, UserError):
    raise
  except Exception as exc:  # recorded, and the sweep goes on
    if _no_space(exc):  # every later point would fail the same way: stop, resumable
      raise UserError(f"no space left while running {point['run_id']} ({exc}); free "
                      "some and run the same command again to resume") from exc
    if distributed.process_count() > 1 and not is_oom(exc):
      raise  # a lost process, most likely: the processes cannot go on in step (cli.py)
    status = "oom" if is_oom(exc) else "error"
    if status == "error":
      traceback.print_exc()
    fields = {"status": status, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
  seconds = time.perf_counter() - t0
  jax_point = point["framework"] == "jax"
  rec = record_lib.base(study, point["run_id"], config, framework=point["framework"],
                        device_kind=point["device_kind"],
                        device_name=fields.pop("device_name", None),
                        n_devices=fields.pop("n_devices", None),
                        n_processes=distributed.process_count() if jax_point else 1,
                        batch_size=point["batch_size"], seed=point.get("seed", config.seed),
                        started=started, seconds=seconds)
  rec.update({k: v for k, v in point.items() if k not in rec})
  rec.update(fields)
  if distributed.is_primary():
    store.append(workdir, rec)
  return rec


def _no_space(exc):
  """Whether a full disk (or a file-size limit) is behind exc, however it was wrapped."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, OSError) and exc.errno in store.NO_SPACE:
      return True
    if any(m in str(exc) for m in ("No space left on device", "File too large",
                                   "Disk quota exceeded")):
      return True
    exc = exc.__cause__ or exc.__context__
  return False


def _headline(rec):
  for key, fmt in (("samples_per_sec", " {:,.0f} samples/s"), ("test_acc", " test acc {:.4f}")):
    if rec.get(key) is not None:
      return "," + fmt.format(rec[key])
  return ""
