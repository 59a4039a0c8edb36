"""Runs a study's grid: skips finished points, records failures as statuses, shows progress.

A point that raises out-of-memory is recorded as `oom`, any other exception
as `error` (with its message), and the sweep goes on; a point whose record
already says ok, diverged or oom is never run again. A UserError (bad input
found only once the data is loaded) stops the sweep: it would fail every point.
"""

import sys
import time
import traceback

from jbatch.errors import UserError
from jbatch.results import record as record_lib, store

OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory", "OutOfMemory")


def progress(message):
  print(f"[jbatch] {message}", file=sys.stderr, flush=True)


def is_oom(exc):
  text = f"{type(exc).__name__}: {exc}"
  return any(m in text for m in OOM_MARKERS)


def run(study, config, workdir, points, run_point):
  """points: dicts with run_id, framework, device_kind, batch_size (and anything else).

  run_point(point) returns the study's fields plus device_name and n_devices,
  and may set status (e.g. 'diverged').
  """
  done = store.finished_run_ids(workdir)
  todo = [p for p in points if p["run_id"] not in done]
  if len(todo) < len(points):
    progress(f"{study}: {len(points) - len(todo)} of {len(points)} points already done, skipped")
  t_sweep = time.perf_counter()
  for i, point in enumerate(todo, 1):
    started, t0 = record_lib.now(), time.perf_counter()
    try:
      fields = run_point(point)
    except (KeyboardInterrupt, UserError):
      raise
    except Exception as exc:  # recorded, and the sweep goes on
      if _no_space(exc):  # every later point would fail the same way: stop, resumable
        raise UserError(f"no space left while running {point['run_id']} ({exc}); free "
                        "some and run the same command again to resume") from exc
      status = "oom" if is_oom(exc) else "error"
      if status == "error":
        traceback.print_exc()
      fields = {"status": status, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    seconds = time.perf_counter() - t0
    rec = record_lib.base(study, point["run_id"], config, framework=point["framework"],
                          device_kind=point["device_kind"],
                          device_name=fields.pop("device_name", None),
                          n_devices=fields.pop("n_devices", None),
                          batch_size=point["batch_size"], seed=point.get("seed", config.seed),
                          started=started, seconds=seconds)
    rec.update({k: v for k, v in point.items() if k not in rec})
    rec.update(fields)
    store.append(workdir, rec)
    elapsed = time.perf_counter() - t_sweep
    left = elapsed / i * (len(todo) - i)
    progress(f"{study} {i}/{len(todo)} {point['run_id']}: {rec['status']} in {seconds:.1f}s"
             f"{_headline(rec)}; about {left:.0f}s left")


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
