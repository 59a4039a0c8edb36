"""The command line end to end: the main job, resuming, and every bad input."""

import json
import os
import shutil


from conftest import REPO, run_cli

SMALL = os.path.join(REPO, "experiments", "throughput_small.py")
REQUIRED = ("study", "run_id", "status", "framework", "device_kind", "device_name", "n_devices",
            "model", "dataset", "batch_size", "seed", "config", "versions", "git_rev", "started",
            "seconds", "last_batch")


def _records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


# Shorter than the real quickstart where another test covers the part left out: Adam in
# test_dynamics, the loader feeding a train step and two determinism modes in test_loader,
# the probes and the largest batch of the critical-batch study in test_critical_batch.
QUICK = ("--config.throughput.epochs=1", "--config.accuracy.epochs=1",
         "--config.dynamics.epochs=1", "--config.dynamics.optimizers=sgd",
         "--config.loader.modes=alone", "--config.determinism.modes=deterministic",
         "--config.critical_batch.batch_sizes=(64,512)", "--config.critical_batch.trials=3",
         "--config.critical_batch.probes.enabled=False", "--config.critical_batch.max_batch=False")


def test_quickstart_end_to_end_then_resume(tmp_path, mnist_dir):
  workdir = str(tmp_path / "qs")
  env = {"JBATCH_DATA_DIR": mnist_dir}
  proc = run_cli(f"--config={REPO}/experiments/quickstart.py", f"--workdir={workdir}",
                 *QUICK, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  every = _records(workdir)
  accuracy = [r for r in every if r["study"] == "accuracy"]
  assert sorted((r["batch_size"], r["rule"]) for r in accuracy) == [
      (32, "linear"), (32, "none"), (256, "linear"), (256, "none")]
  for r in accuracy:
    assert r["status"] == "ok" and r["conv_impl"] == "im2col"
    last = r["history"][-1]  # the final accuracy is the last evaluation's, of 10,000 images
    correct = last["test_acc"] * 10_000
    assert r["final_test_acc"] == last["test_acc"] and abs(correct - round(correct)) < 1e-6
    assert r["num_train"] == 5000 and r["history"][-1]["examples"] == 5000
  assert max(r["final_test_acc"] for r in accuracy) > 0.6  # batch 32 learns in one epoch
  dynamics = {(r["kind"], r["batch_size"], r.get("optimizer"), r.get("batchnorm")): r
              for r in every if r["study"] == "dynamics"}
  assert sorted(dynamics, key=str) == sorted([
      ("train", 16, "sgd", None), ("train", 256, "sgd", None),
      ("accumulation", 128, "sgd", False), ("accumulation", 128, "sgd", True)], key=str)
  for key, r in dynamics.items():
    assert r["status"] == "ok", r
    if key[0] == "train":
      assert len(r["norms_early"]) == len(r["norms_late"]) == 128
      assert r["probe_count"] == 5 and r["sharpness"] > 0 and r["final_distance"] > 0
  assert dynamics[("accumulation", 128, "sgd", False)]["max_abs_param_diff"] < 1e-4
  critical = [r for r in every if r["study"] == "critical_batch"]
  assert [r["batch_size"] for r in critical] == [64, 512]
  for r in critical:  # the MNIST MLP reaches 90% validation accuracy at both
    assert r["status"] == "ok" and len(r["trials"]) == 3 and r["steps_to_target"] > 0, r
    assert r["num_train"] == 4096 and r["target"]["split"] == "validation"
  records = [r for r in every if r["study"] == "throughput" and r["variant"] != "max_batch"]
  (largest,) = [r for r in every if r.get("variant") == "max_batch"]
  assert largest["status"] == "ok" and largest["max_batch"] > 20000
  assert largest["planned_bytes_at_max"] <= largest["memory_budget_bytes"] < largest["planned_bytes_over"]
  assert largest["max_batch"] < largest["smallest_batch_over"] <= largest["max_batch"] * 1.01
  variants = {r["variant"] for r in records}
  assert {"jax_fused", "jax_host"} <= variants
  for r in records:
    assert r["status"] == "ok", r
    for field in REQUIRED:
      assert field in r, field
    assert r["total_s"] > 0 and r["samples_per_sec"] > 0
    assert r["steps_per_epoch"] == -(-20000 // r["batch_size"])  # partial last batch kept
  fused = [r for r in records if r["variant"] == "jax_fused"]
  assert all(r["flops_per_step"] > 0 and r["xla_total_bytes"] > 0 for r in fused)
  report = open(os.path.join(workdir, "report.md")).read()
  assert "Total seconds for 1 epochs" in report and "torch_eager / jax_fused" in report
  assert "Largest batch whose train step fits" in report
  assert {r["study"] for r in every} == {"throughput", "accuracy", "dynamics", "loader",
                                         "determinism", "critical_batch"}
  assert "Steps to target vs batch size" not in report or os.path.exists(
      os.path.join(workdir, "critical_batch_steps_sgd.png"))
  assert "B_crit" in report  # two batch sizes reached the target: the fit is there
  assert all(r["status"] == "ok" for r in every if r["study"] in ("loader", "determinism"))
  assert "The seeds/000 table" in report and "Gradient accumulation" in report
  assert os.path.exists(os.path.join(workdir, "dynamics_norm_hist.png"))
  assert os.path.exists(os.path.join(workdir, "throughput_total_seconds.png"))
  # A second run finds every point done and adds nothing.
  proc = run_cli(f"--config={REPO}/experiments/quickstart.py", f"--workdir={workdir}",
                 *QUICK, env=env)
  assert proc.returncode == 0 and "already done" in proc.stderr
  assert len(_records(workdir)) == len(every)


def test_a_new_batch_size_runs_only_that_point(tmp_path):
  args = [f"--config={SMALL}", f"--workdir={tmp_path}", "--config.epochs=1",
          "--config.variants=('jax_fused',)", "--config.pow2_probe=()",
          "--config.synthetic.num_train=2000", "--config.max_batch=False"]
  assert run_cli(*args, "--config.batch_sizes=(500,)").returncode == 0
  proc = run_cli(*args, "--config.batch_sizes=(500,1000)")
  assert proc.returncode == 0
  assert [r["batch_size"] for r in _records(tmp_path)] == [500, 1000]


def test_bad_input_never_damages_results_already_written(tmp_path, mnist_dir):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "results.jsonl").write_text('{"run_id": "x", "status": "ok"}\n')
  corrupt = tmp_path / "data" / "mnist"
  shutil.copytree(os.path.join(mnist_dir, "mnist"), corrupt)
  (corrupt / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
  proc = run_cli(f"--config={SMALL}", f"--workdir={workdir}", "--config.dataset=mnist",
                 f"--config.data_dir={tmp_path / 'data'}")
  assert proc.returncode == 2 and "replace" in proc.stderr
  assert (workdir / "results.jsonl").read_text() == '{"run_id": "x", "status": "ok"}\n'
  assert sorted(os.listdir(workdir)) == ["results.jsonl"]


def test_batch_not_divisible_by_device_count(tmp_path):
  proc = run_cli(f"--config={SMALL}", f"--workdir={tmp_path / 'run'}", "--config.batch_sizes=(100,)",
                 env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert proc.returncode == 2 and "not divisible by the 8 devices" in proc.stderr


def test_missing_config_and_workdir(tmp_path):
  assert run_cli(f"--workdir={tmp_path}").returncode == 2
  proc = run_cli(f"--config={SMALL}")
  assert proc.returncode == 2 and "--workdir" in proc.stderr
  proc = run_cli("--config=experiments/none.py", f"--workdir={tmp_path / 'r'}")
  assert proc.returncode == 2 and not (tmp_path / "r").exists()
  proc = run_cli("--config=jbatch/studies/dynamics.py", f"--workdir={tmp_path / 'r'}")
  assert proc.returncode == 2 and "has no get_config()" in proc.stderr
