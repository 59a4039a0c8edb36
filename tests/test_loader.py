"""The loader and determinism studies: real JPEG files, three real pipelines, flags in real
subprocesses."""

import json
import os

import numpy as np
import pytest

from conftest import REPO, run_cli
from jbatch.data import augment, jpeg_folder, loaders
from jbatch.errors import UserError
from jbatch.studies import determinism


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("images"))
  jpeg_folder.write(d, "synthetic", 16, size=48, quality=90)
  return d


def test_writing_twice_does_nothing_and_reports_size(folder):
  again = jpeg_folder.write(folder, "synthetic", 16, size=48, quality=90)
  assert again["written"] is False and again["files"] == 16
  assert again["bytes"] == sum(os.path.getsize(os.path.join(folder, c, f))
                               for c in os.listdir(folder) if os.path.isdir(os.path.join(folder, c))
                               for f in os.listdir(os.path.join(folder, c)))
  with pytest.raises(UserError, match="already holds another image set"):
    jpeg_folder.write(folder, "synthetic", 16, size=48, quality=50)


def test_full_crop_without_flip_is_only_normalization():
  image = np.random.default_rng(0).integers(0, 256, (12, 12, 3)).astype(np.uint8)
  out = augment.numpy_transform(image, (0, 0, 12, 12), False, 12)
  np.testing.assert_allclose(out, (image - augment.MEAN) / augment.STD, rtol=1e-6)
  flipped = augment.numpy_transform(image, (0, 0, 12, 12), True, 12)
  np.testing.assert_allclose(flipped, out[:, ::-1], rtol=1e-6)


def test_three_pipelines_make_the_same_batches(folder):
  paths, labels, _ = jpeg_folder.list_images(folder)
  items = loaders.epoch_items(paths, labels, 0, 0, 48, 48)
  out = {b: list(loaders.batches(b, items, 4, 24, 0)) for b in loaders.BACKENDS}
  assert [len(v) for v in out.values()] == [4, 4, 4]
  for b in ("tfdata", "grain"):
    for (xa, ya), (xb, yb) in zip(out[b], out["torch"]):
      assert xa.shape == (4, 24, 24, 3) and xa.dtype == np.float32
      np.testing.assert_allclose(xa, xb, atol=1e-4)
      np.testing.assert_array_equal(ya, yb)
  # The batches follow the epoch's order: labels are the folders' in that order.
  expected = [it[1] for it in items[:16]]
  assert np.concatenate([y for _, y in out["torch"]]).tolist() == expected


@pytest.mark.parametrize("backend", loaders.BACKENDS)
def test_worker_count_is_the_parallelism(folder, tmp_path, backend):
  paths, labels, _ = jpeg_folder.list_images(folder)
  items = loaders.epoch_items(paths, labels, 0, 0, 48, 48)
  seen = {}
  for workers in (0, 2):
    trace = tmp_path / f"w{workers}"
    trace.mkdir()
    list(loaders.batches(backend, items, 2, 24, workers, trace_dir=str(trace)))
    seen[workers] = {name.split("-")[0 if backend != "tfdata" else 1] for name in os.listdir(trace)}
  assert len(seen[0]) == 1 and len(seen[2]) == 2
  if backend != "tfdata":  # worker processes, not this one
    assert str(os.getpid()) in seen[0] and str(os.getpid()) not in seen[2]


def test_corrupt_files_are_counted_or_refused(tmp_path):
  d = tmp_path / "imgs"
  jpeg_folder.write(str(d), "synthetic", 200, size=16)
  victim = sorted((d / os.listdir(d)[0]).iterdir())[0]
  victim.write_bytes(victim.read_bytes()[:50])  # truncated: no end-of-image marker
  paths, _, skipped = jpeg_folder.list_images(str(d))
  assert len(paths) == 199 and skipped == [str(victim)]
  with pytest.raises(UserError, match="are not whole JPEGs"):
    jpeg_folder.list_images(str(d), max_bad_fraction=0.001)
  (tmp_path / "empty" / "a").mkdir(parents=True)
  with pytest.raises(UserError, match="no readable JPEG"):
    jpeg_folder.list_images(str(tmp_path / "empty"))
  with pytest.raises(UserError, match="does not exist"):
    jpeg_folder.list_images(str(tmp_path / "nowhere"))


LOADER = [f"--config={REPO}/experiments/loader_small.py", "--config.images.source=synthetic",
          "--config.images.count=64", "--config.images.size=32", "--config.crop_size=16",
          "--config.batch_size=16", "--config.model=cnn", "--config.cnn.channels=(4,)",
          "--config.cnn.hidden=8"]


def test_loader_study_runs_every_backend_and_mode(tmp_path):
  proc = run_cli(*LOADER, "--config.workers=(0,1)", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "results.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert sorted((r["backend"], r["workers"], r["mode"]) for r in records) == sorted(
      (b, w, m) for b in loaders.BACKENDS for w in (0, 1) for m in ("alone", "train"))
  for r in records:
    assert r["status"] == "ok" and r["timed_batches"] == 3 and r["images_per_sec"] > 0
    assert r["files"] == 64 and r["skipped_files"] == 0
    if r["mode"] == "train":
      assert 0 <= r["wait_fraction"] <= 1
  report = open(tmp_path / "report.md").read()
  assert "The seeds/000 table" in report
  assert "train step compile s" in report  # as every study's report shows compile seconds
  assert all(r["step_compile_s"] > 0 for r in records if r["mode"] == "train")


def test_determinism_flag_is_set_only_in_its_subprocess(tmp_path):
  env = determinism.child_env("deterministic", "cpu")
  assert "--xla_gpu_deterministic_ops=true" in env["XLA_FLAGS"] and env["JAX_PLATFORMS"] == "cpu"
  assert "deterministic_ops" not in os.environ.get("XLA_FLAGS", "")
  assert "deterministic_ops" not in determinism.child_env("default", "cpu")["XLA_FLAGS"]
  proc = run_cli(f"--config={REPO}/experiments/seed000_determinism.py", "--config.steps=2",
                 "--config.synthetic.num_train=512", "--config.synthetic.input_shape=(8,8,3)",
                 "--config.cnn.channels=(4,)", "--config.batch_sizes=64", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "results.jsonl") as f:
    records = {r["mode"]: r for r in map(json.loads, f)}
  assert records["deterministic"]["xla_flags"] == "--xla_gpu_deterministic_ops=true"
  assert records["default"]["xla_flags"] == ""
  for r in records.values():  # XLA on a CPU is deterministic either way
    assert r["identical"] and len(set(r["params_sha256"])) == 1 and r["step_ms_median"] > 0
  # Both modes train the same run: the same parameters.
  assert records["default"]["params_sha256"] == records["deterministic"]["params_sha256"]
  assert "compile s (first run)" in open(tmp_path / "report.md").read()
  assert all(r["compile_s"] > 0 for r in records.values())
