"""The JSONL results store of a run folder: append-only, one record a line.

Each record is written with a single O_APPEND write followed by fsync, so a
process killed at any moment leaves either the whole line or none of it. A
line that is not valid JSON (a disk filled mid-write, a hand edit) is skipped
with a warning when reading, never rewritten, so results already written are
never damaged.
"""

import json
import os
import warnings

RESULTS_FILE = "results.jsonl"
FINISHED = ("ok", "diverged", "oom", "not_reached")  # a target not met is a result


def append(workdir, record):
  path = os.path.join(workdir, RESULTS_FILE)
  line = (json.dumps(record, sort_keys=True, default=_jsonable) + "\n").encode()
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    # A previous writer killed mid-line would glue our record onto its tail.
    if os.fstat(fd).st_size and not _ends_with_newline(path):
      line = b"\n" + line
    os.write(fd, line)
    os.fsync(fd)
  finally:
    os.close(fd)


def read(workdir):
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        warnings.warn(f"{path}:{number}: skipping a line that is not JSON")
  return records


def finished_run_ids(workdir):
  """The runs that need not be redone: their last record is a result (see FINISHED);
  a run whose last record is an error is tried again."""
  last = {}
  for record in read(workdir):
    last[record.get("run_id")] = record.get("status")
  return {run_id for run_id, status in last.items() if status in FINISHED}


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
