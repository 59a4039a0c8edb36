import json
import os

import pytest

from jbatch.results import store


def test_append_read_and_finished(tmp_path):
  store.append(tmp_path, {"run_id": "a", "status": "error"})
  store.append(tmp_path, {"run_id": "a", "status": "ok"})
  store.append(tmp_path, {"run_id": "b", "status": "oom"})
  store.append(tmp_path, {"run_id": "c", "status": "diverged"})
  store.append(tmp_path, {"run_id": "d", "status": "ok"})
  store.append(tmp_path, {"run_id": "d", "status": "error"})  # a rerun that failed: try again
  assert [r["run_id"] for r in store.read(tmp_path)] == ["a", "a", "b", "c", "d", "d"]
  assert store.finished_run_ids(tmp_path) == {"a", "b", "c"}


def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next(tmp_path):
  store.append(tmp_path, {"run_id": "a", "status": "ok"})
  with open(os.path.join(tmp_path, store.RESULTS_FILE), "a") as f:
    f.write('{"run_id": "b", "sta')  # a writer killed mid-line
  with pytest.warns(UserWarning, match="not JSON"):
    assert [r["run_id"] for r in store.read(tmp_path)] == ["a"]
  store.append(tmp_path, {"run_id": "c", "status": "ok"})
  with pytest.warns(UserWarning):
    assert [r["run_id"] for r in store.read(tmp_path)] == ["a", "c"]
  lines = open(os.path.join(tmp_path, store.RESULTS_FILE)).read().splitlines()
  assert json.loads(lines[0])["run_id"] == "a" and lines[1].startswith('{"run_id": "b"')


def test_numpy_values_are_written_as_json(tmp_path):
  import numpy as np
  store.append(tmp_path, {"run_id": "x", "v": np.float32(1.5), "a": np.arange(3)})
  r = store.read(tmp_path)[0]
  assert r["v"] == 1.5 and r["a"] == [0, 1, 2]
