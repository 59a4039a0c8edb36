"""One run over several real local processes (JAX's multi-process runtime, gloo on CPUs):
the same answer as one process, a lost process, a mismatched config, bad flags."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO

SUITE = [f"--config={REPO}/tests/configs/two_studies.py"]
RUNTIME_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d|WARNING|\[Gloo\])")  # XLA's, gloo's


def own_lines(stderr):
  return [l for l in stderr.splitlines() if l and not RUNTIME_LOG.match(l)]


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def env(devices=1):
  e = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  e.pop("JBATCH_WORKER", None)
  return e


@contextlib.contextmanager
def processes(n, args, workdir, port=None, extra=lambda i: []):
  """n jbatch processes of one job on 127.0.0.1; every one is killed and reaped on exit."""
  port = port or free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "jbatch", *args, f"--workdir={workdir}",
       f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={n}",
       f"--process_id={i}", *extra(i)], cwd=REPO, env=env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(n)]
  try:
    yield procs
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.communicate(timeout=60)


def finish(procs, timeout=240):
  """(return codes, stderr lines that are jbatch's own) of every process."""
  out = []
  for p in procs:
    _, err = p.communicate(timeout=timeout)
    out.append((p.returncode, own_lines(err)))
  return out


def one_process(args, workdir, devices):
  return subprocess.run([sys.executable, "-m", "jbatch", *args, f"--workdir={workdir}"],
                        cwd=REPO, env=env(devices), capture_output=True, text=True, timeout=300)


def records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return {r["study"]: r for r in map(json.loads, f)}


def final_params(checkpoint_dir):
  """The finished run's parameters, from its Orbax checkpoint, by name."""
  from jbatch.train import checkpoint
  return checkpoint._flat(checkpoint.saved_state(checkpoint_dir)["params"])


def test_two_processes_train_as_one_process_on_two_devices_and_as_one_device(tmp_path):
  with processes(2, SUITE, tmp_path / "p2") as procs:
    (c0, err0), (c1, err1) = finish(procs)
  assert (c0, c1) == (0, 0), (err0[-5:], err1[-5:])
  assert not any(l.startswith("[jbatch]") for l in err1)  # process 0 alone reports
  written = set(os.listdir(tmp_path / "p2"))
  assert {"checkpoints", "config.json", "report.md", "results.jsonl"} <= written
  assert not written & {"claims", "workers"}  # the sweep's claims are cleaned up
  d2 = one_process(SUITE, tmp_path / "d2", devices=2)
  d1 = one_process(SUITE, tmp_path / "d1", devices=1)
  assert d2.returncode == 0 and d1.returncode == 0, (d2.stderr[-2000:], d1.stderr[-2000:])
  runs = {name: records(tmp_path / name) for name in ("p2", "d2", "d1")}
  assert [runs[n]["accuracy"]["n_processes"] for n in runs] == [2, 1, 1]
  assert [runs[n]["accuracy"]["n_devices"] for n in runs] == [2, 2, 1]
  for study in ("accuracy", "dynamics"):
    r = {n: runs[n][study] for n in runs}
    assert r["p2"]["run_id"] == r["d2"]["run_id"] == r["d1"]["run_id"]
    p = {n: final_params(r[n]["checkpoint_dir"]) for n in r}
    for name in p["p2"]:  # gloo's all-reduce against XLA's in-process one: float32 round-off
      np.testing.assert_allclose(p["p2"][name], p["d2"][name], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(p["p2"][name], p["d1"][name], rtol=1e-4, atol=1e-5)
    for key in ("final_test_acc", "final_train_loss"):
      assert r["p2"][key] == pytest.approx(r["d2"][key], rel=1e-5)
      assert r["p2"][key] == pytest.approx(r["d1"][key], rel=1e-4)
  # The noise scale from per-device gradients (2 devices, of 2 processes or of one) and from
  # 2 groups of the probe batch on one device: the same estimate.
  dyn = {n: runs[n]["dynamics"] for n in runs}
  assert dyn["p2"]["b_simple_groups"] == pytest.approx(dyn["d2"]["b_simple_groups"], rel=1e-4)
  assert dyn["p2"]["b_simple_groups"] == pytest.approx(dyn["d1"]["b_simple_groups"], rel=1e-3)
  assert dyn["p2"]["b_simple"] == pytest.approx(dyn["d1"]["b_simple"], rel=1e-3)


def test_a_killed_process_stops_the_others_and_the_same_command_resumes(tmp_path):
  long = SUITE + ["--config.suite=('accuracy',)", "--config.accuracy.epochs=8",
                  "--config.accuracy.batch_sizes=(32,)", "--config.accuracy.checkpoint_every=1"]
  workdir = tmp_path / "run"
  with processes(2, long, workdir, extra=lambda i: ["--heartbeat_timeout=5"]) as procs:
    ckpts = workdir / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not any(ckpts.glob("*/*/commit_success.txt")):
      assert procs[0].poll() is None and procs[1].poll() is None
      time.sleep(0.2)
    assert any(ckpts.glob("*/*/commit_success.txt")), "no checkpoint was written"
    procs[1].send_signal(signal.SIGKILL)
    killed = time.time()
    _, err = procs[0].communicate(timeout=60)
    stopped = time.time() - killed
  assert procs[0].returncode not in (0, None)
  assert stopped < 30  # the heartbeat timeout (5 s) and a little
  lines = [l for l in err.splitlines() if l.startswith("jbatch: error")]
  assert len(lines) == 1 and "process 1 of 2 was lost" in lines[0], err[-3000:]
  assert not (workdir / "results.jsonl").exists()  # the point did not finish: no record
  steps = max(int(p.name) for p in ckpts.glob("*/[0-9]*"))
  assert 16 <= steps < 8 * 16  # 16 steps an epoch: killed after a checkpoint, before the end
  with processes(2, long, workdir) as procs:  # the same command again
    (c0, err0), (c1, _) = finish(procs)
  assert (c0, c1) == (0, 0), err0[-5:]
  rec = records(workdir)["accuracy"]
  assert rec["status"] == "ok" and rec["resumed_from_epoch"] == steps // 16
  assert [h["epoch"] for h in rec["history"]] == list(range(1, 9))


WAIT_AT_A_BARRIER = """
import os, signal, sys, time
from jbatch import distributed
distributed.join(sys.argv[1], 2, int(sys.argv[2]), init_timeout=30, heartbeat_timeout=3)
distributed.watch(lambda line: os.write(2, f"lost: {line}\\n".encode()))
if distributed.is_primary():  # as Orbax waits after a checkpoint's commit: no collective fails
  distributed._client().wait_at_barrier("never-reached", 10 * 60 * 1000)
else:
  time.sleep(2)
  os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_waiting_at_a_barrier_stops_when_another_is_killed():
  """The watcher (distributed.watch), not the main thread, sees the loss: process 0 waits
  at a barrier of the coordinator that process 1 never reaches, where no collective
  fails, and still stops within about the heartbeat timeout (3 s), with one line."""
  port = free_port()
  procs = [subprocess.Popen([sys.executable, "-c", WAIT_AT_A_BARRIER, f"127.0.0.1:{port}", str(i)],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  try:
    _, err = procs[0].communicate(timeout=60)
    procs[1].communicate(timeout=60)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert procs[1].returncode == -signal.SIGKILL
  assert procs[0].returncode == 3
  lines = [l for l in err.splitlines() if l.startswith("lost: ")]
  assert lines == ["lost: process 1 of 2 was lost; the results written so far are intact: run "
                   "the same command again on every process to resume from the last checkpoint"]


def test_processes_with_different_configs_refuse_naming_the_one_that_differs(tmp_path):
  with processes(2, SUITE, tmp_path / "run",
                 extra=lambda i: ["--config.accuracy.epochs=3"] if i == 1 else []) as procs:
    results = finish(procs, timeout=120)
  for code, err in results:
    assert code == 2
    assert len(err) == 1 and err[0].startswith("jbatch: error: process 1 runs a different "
                                               "config than process 0"), err
  assert not (tmp_path / "run").exists()


def test_an_unreachable_coordinator_is_one_line_within_the_init_timeout(tmp_path):
  t0 = time.time()
  with processes(2, SUITE, tmp_path / "run", extra=lambda i: ["--init_timeout=3"]) as procs:
    procs[0].kill()  # the coordinator never answers
    procs[0].wait()
    _, err = procs[1].communicate(timeout=60)
  assert time.time() - t0 < 40
  assert procs[1].returncode == 2
  lines = own_lines(err)
  assert len(lines) == 1 and "could not reach the coordinator" in lines[0], lines
  assert not (tmp_path / "run").exists()
