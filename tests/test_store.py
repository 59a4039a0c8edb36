import json
import os

import pytest

from jbatch.results import store


def test_append_read_and_finished(tmp_path):
  store.append(tmp_path, {"study": "s", "run_id": "a", "status": "error"})
  store.append(tmp_path, {"study": "s", "run_id": "a", "status": "ok"})
  store.append(tmp_path, {"study": "s", "run_id": "b", "status": "oom"})
  store.append(tmp_path, {"study": "s", "run_id": "c", "status": "diverged"})
  store.append(tmp_path, {"study": "s", "run_id": "d", "status": "ok"})
  store.append(tmp_path, {"study": "s", "run_id": "d", "status": "error"})  # a rerun that failed: try again
  assert [r["run_id"] for r in store.read(tmp_path)] == ["a", "a", "b", "c", "d", "d"]
  assert store.finished_run_ids(tmp_path) == {"a", "b", "c"}


def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path):
  store.append(tmp_path, {"study": "s", "run_id": "a", "status": "ok"})
  with open(os.path.join(tmp_path, store.RESULTS_FILE), "a") as f:
    f.write('{"study": "s", "run_id": "b", "sta')  # a writer killed mid-line
  with pytest.warns(UserWarning, match="skipping line"):
    assert [r["run_id"] for r in store.read(tmp_path)] == ["a"]
  store.append(tmp_path, {"study": "s", "run_id": "c", "status": "ok"})
  with pytest.warns(UserWarning):
    assert [r["run_id"] for r in store.read(tmp_path)] == ["a", "c"]
  lines = open(os.path.join(tmp_path, store.RESULTS_FILE)).read().splitlines()
  assert json.loads(lines[0])["run_id"] == "a" and lines[1].startswith('{"study": "s", "run_id": "b"')


def test_numpy_values_are_written_as_json(tmp_path):
  import numpy as np
  store.append(tmp_path, {"study": "s", "status": "ok", "run_id": "x", "v": np.float32(1.5),
                          "a": np.arange(3)})
  r = store.read(tmp_path)[0]
  assert r["v"] == 1.5 and r["a"] == [0, 1, 2]


def test_lines_that_are_not_records_are_skipped_with_one_warning(tmp_path):
  store.append(tmp_path, {"study": "s", "run_id": "a", "status": "ok"})
  path = os.path.join(tmp_path, store.RESULTS_FILE)
  with open(path, "ab") as f:
    f.write(b'{"study": "s", "run_id": "\xff\xfe", "status": "ok"}\n')  # not UTF-8
    f.write(b'[1, 2, 3]\n')  # JSON, not an object
    f.write(b'{"run_id": "x"}\n')  # an object without study and status
  store.append(tmp_path, {"study": "s", "run_id": "b", "status": "ok"})
  before = open(path, "rb").read()
  with pytest.warns(UserWarning, match=r"skipping line\(s\) 2, 3, 4:") as caught:
    assert [r["run_id"] for r in store.read(tmp_path)] == ["a", "b"]
  assert len(caught) == 1
  with pytest.warns(UserWarning):
    assert store.finished_run_ids(tmp_path) == {"a", "b"}
  assert open(path, "rb").read() == before  # never rewritten


def test_a_failed_append_leaves_whole_records_only(tmp_path):
  import resource
  import subprocess
  import sys
  store.append(tmp_path, {"study": "s", "run_id": "a", "status": "ok"})
  path = os.path.join(tmp_path, store.RESULTS_FILE)
  before = open(path, "rb").read()
  # In a child limited to files of len(before) + 10 bytes, a long record cannot fit: the
  # write stops part-way, and the file must be cut back to its whole records.
  code = ("import sys; sys.path.insert(0, %r)\n"
          "from jbatch.results import store\n"
          "from jbatch.errors import UserError\n"
          "try:\n  store.append(%r, {'study': 's', 'run_id': 'b', 'status': 'ok', 'x': 'y' * 500})\n"
          "except UserError as e:\n  print(e); sys.exit(3)\n") % (os.getcwd(), str(tmp_path))
  limit = len(before) + 10
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE,
                                                              (limit, limit)))
  assert proc.returncode == 3 and "no space left" in proc.stdout, proc.stderr
  assert open(path, "rb").read() == before
