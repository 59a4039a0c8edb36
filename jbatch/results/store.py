"""The JSONL results store of a run folder: append-only, one record a line.

Each record is written with a single O_APPEND write followed by fsync, under a
flock of the file (several workers may share it); a write
that fails part-way (a full disk, a file-size limit) is cut back to where the
file ended, so the file holds whole records only. A line that is not a record
(not UTF-8, not JSON, not an object, no study or status: a hand edit, another
tool) is skipped when reading with one warning naming the line numbers, and is
never rewritten, so results already written are never damaged.
"""

import errno
import fcntl
import json
import os
import warnings

from jbatch.errors import UserError

# A write that fails with one of these is the disk, not jbatch: the run stops, resumable.
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)

RESULTS_FILE = "results.jsonl"
FINISHED = ("ok", "diverged", "oom", "not_reached")  # a target not met is a result


def append(workdir, record):
  path = os.path.join(workdir, RESULTS_FILE)
  line = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)  # workers of one sweep append to one file (claims.py)
    size = os.fstat(fd).st_size
    # A previous writer killed mid-line would glue our record onto its tail.
    if size and not _ends_with_newline(path):
      line = b"\n" + line
    try:
      written = os.write(fd, line)
      if written != len(line):
        raise OSError(errno.ENOSPC, "short write")
      os.fsync(fd)
    except OSError as exc:
      os.ftruncate(fd, size)  # whole records only
      if exc.errno in NO_SPACE:
        raise UserError(f"no space left to write {path} ({exc.strerror}); free some and run "
                        "the same command again to resume") from exc
      raise
  finally:
    os.close(fd)


def read(workdir):
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return []
  records, skipped = [], []
  with open(path, "rb") as f:
    for number, raw in enumerate(f, 1):
      if not raw.strip():
        continue
      try:
        record = json.loads(raw.decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError):
        record = None
      if isinstance(record, dict) and "study" in record and "status" in record:
        records.append(record)
      else:
        skipped.append(number)
  if skipped:
    warnings.warn(f"{path}: skipping line(s) {', '.join(map(str, skipped))}: not a jbatch "
                  "record (not UTF-8 JSON, not an object, or no study/status); the file is "
                  "left as it is")
  return records


def finished_run_ids(workdir, errors_since=None):
  """The runs that need not be redone: their last record is a result (see FINISHED);
  a run whose last record is an error is tried again, unless it was recorded at or after
  errors_since (a record's `started`): a sweep tries a point once."""
  last = {}
  for record in read(workdir):
    last[record.get("run_id")] = record
  return {run_id for run_id, r in last.items() if r.get("status") in FINISHED or
          (errors_since is not None and str(r.get("started", "")) >= errors_since)}


def _ends_with_newline(path):
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def _jsonable(value):
  """numpy and jax scalars and arrays as plain JSON."""
  if hasattr(value, "tolist"):
    return value.tolist()
  if hasattr(value, "to_dict"):
    return value.to_dict()
  return str(value)
