"""One sweep shared by several real jbatch processes: each point recorded once, a killed
worker's point taken over, a worker with another config refused, the report complete."""

import collections
import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO, run_cli
from jbatch import workers

GRID = [f"--config={REPO}/experiments/accuracy_small.py", "--config.dataset=synthetic",
        "--config.model=mlp", "--config.synthetic.num_test=200", "--config.rules=none",
        "--config.eval_train_examples=200", "--config.synthetic.num_train=2000",
        "--config.batch_sizes=(16,32,64,128)", "--config.epochs=1"]


def records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


def start(args, workdir):
  env = dict(os.environ)
  env.pop("JBATCH_WORKER", None)
  return subprocess.Popen([sys.executable, "-m", "jbatch", *args, f"--workdir={workdir}"],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def reap(*procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.communicate(timeout=60)


def check_complete(workdir):
  recs = records(workdir)
  counts = collections.Counter(r["run_id"] for r in recs)
  assert len(counts) == 4 and set(counts.values()) == {1}, counts  # every point, once
  assert all(r["status"] == "ok" for r in recs)
  report = (workdir / "report.md").read_text()
  for r in recs:  # the last worker to finish wrote the report of every point
    assert f"| {r['batch_size']} |" in report
  assert not (workdir / "claims").exists() and not (workdir / "workers").exists()


def test_workers_flag_runs_each_point_once_on_pinned_cores(tmp_path):
  workdir = tmp_path / "run"
  proc = run_cli(*GRID, "--workers=2", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "2 workers started" in proc.stderr
  assert "[jbatch w0]" in proc.stderr and "[jbatch w1]" in proc.stderr
  assert proc.stdout.count("report: ") == 1  # the parent's line, once
  check_complete(workdir)
  pinned = {len(g) for g in workers.core_groups(os.sched_getaffinity(0), 2)}
  assert {r["cpus_allowed"] for r in records(workdir)} <= pinned  # each its own cores


def test_a_worker_killed_mid_point_has_its_point_taken_over(tmp_path):
  workdir = tmp_path / "run"
  first, second = start(GRID, workdir), start(GRID, workdir)
  try:
    claims = workdir / "claims"
    deadline = time.time() + 120
    held = []
    while time.time() < deadline and not held:
      held = [c for c in claims.glob("*.json")
              if _owner(c) == first.pid] if claims.exists() else []
      assert first.poll() is None, first.communicate()[1][-2000:]
      time.sleep(0.05)
    assert held, "the first worker never claimed a point"
    taken = json.loads(held[0].read_text())["run_id"]
    first.send_signal(signal.SIGKILL)
    _, err = second.communicate(timeout=240)
    assert second.returncode == 0, err[-3000:]
  finally:
    reap(first, second)
  check_complete(workdir)
  assert taken in {r["run_id"] for r in records(workdir)}


def _owner(path):
  try:
    return json.loads(path.read_text()).get("pid")
  except (OSError, ValueError):
    return None


def test_a_worker_with_another_config_is_refused_while_one_runs(tmp_path):
  workdir = tmp_path / "run"
  first = start(GRID + ["--config.epochs=30"], workdir)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / "claims").exists():
      assert first.poll() is None
      time.sleep(0.05)
    other = run_cli(*GRID, "--config.epochs=2", f"--workdir={workdir}")
    assert other.returncode == 2
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by jbatch pid {first.pid}" in lines[0], lines
    assert "with another config" in lines[0]
    assert first.poll() is None  # the first run goes on undisturbed
  finally:
    reap(first)
  # SIGKILL left its registration behind; its process is gone, so the next run goes ahead.
  assert (workdir / "workers").exists()
  again = run_cli(*GRID, "--config.batch_sizes=(128,)", f"--workdir={workdir}")
  assert again.returncode == 0, again.stderr[-2000:]


def test_core_groups_split_the_cores_evenly():
  assert workers.core_groups({0, 1}, 2) == [[0], [1]]
  assert workers.core_groups(range(5), 2) == [[0, 1, 2], [3, 4]]
  assert workers.core_groups([3, 1, 2, 0], 3) == [[0, 1], [2], [3]]
  env = workers.child_env(1, [5])
  assert env["JBATCH_WORKER"] == "1" and env["OMP_NUM_THREADS"] == "1"
  assert workers.without_workers_flag(["--a=1", "--workers=2", "--workers", "3", "--b"]) == [
      "--a=1", "--b"]


def test_workers_above_the_core_count_are_capped_with_a_warning(monkeypatch, capsys):
  import pytest
  from jbatch.errors import UserError
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
  assert workers.check(2) == 2 and capsys.readouterr().err == ""
  assert workers.check(8) == 3
  assert "--workers=8 but this process may use 3 cores; starting 3" in capsys.readouterr().err
  with pytest.raises(UserError, match="--workers=0; give 1 or more"):
    workers.check(0)
