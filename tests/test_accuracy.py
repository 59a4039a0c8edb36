"""The accuracy study end to end: resume after a kill, pre-trained starts, divergence, bad input."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_cli

# A fast study: the seeds/004 MLP on teacher-labelled data.
FAST = [f"--config={REPO}/experiments/accuracy_small.py", "--config.dataset=synthetic",
        "--config.model=mlp", "--config.synthetic.num_train=4000",
        "--config.synthetic.num_test=1000", "--config.eval_train_examples=1000",
        "--config.rules=linear"]


def _records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


def _final_params(workdir):
  import jax
  from jbatch.train import checkpoint
  directory, _ = checkpoint.find_finished(workdir)
  mgr = checkpoint._manager(directory, create=False)
  import orbax.checkpoint as ocp
  state = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore())).state
  return jax.tree.leaves(state["params"])


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
  # Epochs of about half a second, so that the kill lands well before the end even when
  # this process waits for a core.
  args = FAST + ["--config.synthetic.num_train=80000", "--config.batch_sizes=8",
                 "--config.epochs=12", "--config.checkpoint_every=1"]
  whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
  proc = subprocess.Popen([sys.executable, "-m", "jbatch", *args, f"--workdir={killed}"],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  pattern = os.path.join(killed, "checkpoints", "*", "[0-9]*")
  deadline = time.time() + 300
  while not [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()] and time.time() < deadline:
    assert proc.poll() is None, "the run ended before its first checkpoint"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)  # at an arbitrary point after the first checkpoint
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "results.jsonl"))  # it really was cut short

  resumed = run_cli(*args, f"--workdir={killed}")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from the checkpoint after epoch" in resumed.stderr
  assert run_cli(*args, f"--workdir={whole}").returncode == 0
  r_killed, r_whole = _records(killed)[-1], _records(whole)[-1]
  assert 1 <= r_killed["resumed_from_epoch"] < 12 and r_whole["resumed_from_epoch"] is None
  assert len(r_killed["history"]) == 12
  assert r_killed["final_test_acc"] == r_whole["final_test_acc"]
  for a, b in zip(_final_params(killed), _final_params(whole)):
    np.testing.assert_array_equal(a, b)
  # Run again: nothing left to do.
  again = run_cli(*args, f"--workdir={killed}")
  assert "1 of 1 points already done" in again.stderr and len(_records(killed)) == 1


def _numpy_test_accuracy(checkpoint_dir, num_classes):
  """Test accuracy of a finished run's saved MLP, by a NumPy forward pass of its own (ReLU
  layers, evaluation-mode BatchNorm) on the synthetic test set made again."""
  import orbax.checkpoint as ocp
  from jbatch.data import synthetic
  from jbatch.train import checkpoint
  mgr = checkpoint._manager(checkpoint_dir, create=False)
  state = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore())).state
  p, s = state["params"], state["model_state"]
  v = lambda node: np.asarray(node["value"], np.float64)
  data = synthetic.make(4000, 1000, (32,), num_classes, seed=0)
  h = data.test_x.astype(np.float64)
  for i in range(len(p["hidden"])):
    h = np.maximum(h @ v(p["hidden"][str(i)]["kernel"]) + v(p["hidden"][str(i)]["bias"]), 0)
  h = (h - v(s["norm"]["mean"])) / np.sqrt(v(s["norm"]["var"]) + 1e-5)
  h = h * v(p["norm"]["scale"]) + v(p["norm"]["bias"])
  logits = h @ v(p["out"]["kernel"]) + v(p["out"]["bias"])
  return float(np.mean(logits.argmax(1) == data.test_y))


def test_pretrained_start_on_other_classes(tmp_path):
  pre, fine = str(tmp_path / "pre"), str(tmp_path / "fine")
  proc = run_cli(*FAST, "--config.batch_sizes=64", "--config.epochs=2", f"--workdir={pre}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = run_cli(*FAST, "--config.synthetic.num_classes=4", "--config.batch_sizes=16,256",
                 "--config.epochs=2", "--config.inits=random,pretrained",
                 f"--config.init_checkpoint={pre}", "--config.target.metric=acc",
                 "--config.target.value=0.3", "--config.target.stop=False",
                 f"--workdir={fine}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = _records(fine)
  assert sorted((r["batch_size"], r["init"]) for r in records) == [
      (16, "pretrained"), (16, "random"), (256, "pretrained"), (256, "random")]
  for r in records:
    assert r["status"] == "ok" and len(r["history"]) == 2
    assert r["head_reinitialized"] == (["out/bias", "out/kernel"] if r["init"] == "pretrained"
                                       else [])
    # the recorded accuracy is that of the saved weights, computed here another way
    assert r["final_test_acc"] == pytest.approx(_numpy_test_accuracy(r["checkpoint_dir"], 4),
                                                abs=1.5e-3)  # a float32 tie flips 1 in 1000
    assert r["steps_per_epoch"] == -(-4000 // r["batch_size"])
    assert r["lr_peak"] == pytest.approx(0.1 * r["batch_size"] / 128)  # linear rule
    assert r["history"][-1]["examples"] == 8000
  report = open(os.path.join(fine, "report.md")).read()
  assert "The seeds/000 table" in report and "pretrained" in report
  assert os.path.exists(os.path.join(fine, "accuracy_vs_batch.png"))


def test_divergence_is_a_status_and_the_sweep_goes_on(tmp_path):
  workdir = str(tmp_path / "nan")
  proc = run_cli(*FAST, "--config.batch_sizes=32,64", "--config.epochs=2",
                 "--config.learning_rates.sgd=1e12", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = _records(workdir)
  assert [r["status"] for r in records] == ["diverged", "diverged"]
  assert all(r["diverged_epoch"] == 1 for r in records)
  again = run_cli(*FAST, "--config.batch_sizes=32,64", "--config.epochs=2",
                  "--config.learning_rates.sgd=1e12", f"--workdir={workdir}")
  assert "2 of 2 points already done" in again.stderr


def test_checkpoint_of_another_model_is_refused(tmp_path):
  pre = str(tmp_path / "pre")
  assert run_cli(*FAST, "--config.batch_sizes=256", "--config.epochs=1",
                 f"--workdir={pre}").returncode == 0
  proc = run_cli(*FAST, "--config.mlp.width=32", "--config.epochs=1",
                 "--config.inits=pretrained", f"--config.init_checkpoint={pre}",
                 f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 2 and "use the same model settings" in proc.stderr, proc.stderr
