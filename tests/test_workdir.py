"""Run-folder safety with real processes: a full disk mid-run, the compile cache (several
jbatch processes on one folder: test_workers.py)."""

import json
import os
import resource
import subprocess
import sys

from conftest import REPO, run_cli, run_python

ACC = [f"--config={REPO}/experiments/accuracy_small.py", "--config.dataset=synthetic",
       "--config.model=mlp", "--config.synthetic.num_test=200", "--config.rules=none",
       "--config.eval_train_examples=200"]


def _records(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_a_full_disk_stops_the_run_and_the_next_run_resumes(tmp_path):
  workdir = tmp_path / "run"
  args = ACC + ["--config.synthetic.num_train=600", "--config.epochs=1", f"--workdir={workdir}"]
  assert run_cli(*args, "--config.batch_sizes=(100,)").returncode == 0
  results = workdir / "results.jsonl"
  before = results.read_bytes()
  limit = len(before) + 200  # no file may grow past this: the next record cannot be written

  def small_disk():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

  full = subprocess.run([sys.executable, "-m", "jbatch", *args, "--config.batch_sizes=(100,200)"],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        preexec_fn=small_disk)
  assert full.returncode != 0
  errors = [l for l in full.stderr.splitlines() if l.startswith("jbatch: error:")]
  # One line of jbatch's own (Orbax's writer threads may log theirs before it).
  assert len(errors) == 1 and "no space left" in errors[0], full.stderr[-3000:]
  assert results.read_bytes() == before  # the earlier record intact, no torn line
  again = run_cli(*args, "--config.batch_sizes=(100,200)")
  assert again.returncode == 0, again.stderr[-2000:]
  assert "1 of 2 points already done" in again.stderr
  assert [r["batch_size"] for r in _records(workdir)] == [100, 200]
  assert results.read_bytes().startswith(before)


def test_the_compile_cache_reaches_the_studies_child_processes_with_its_threshold(
    tmp_path, monkeypatch):
  """The determinism modes run in child processes: they must write and load the same cache,
  and programs under JAX's default 1 s threshold too (they compiled anew in every run)."""
  import jax
  from jbatch.results import workdir
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  before = {n: getattr(jax.config, n) for n in names}
  for n in names:
    monkeypatch.delenv(n.upper(), raising=False)  # restored after the test
  try:
    workdir.use_compile_cache(str(tmp_path / "cache"))
    child = run_python("import jax; print(*(getattr(jax.config, n) for n in %r))" % (names,))
  finally:
    for n, value in before.items():
      jax.config.update(n, value)
  assert child.stdout.split() == [str(tmp_path / "cache"), "0.0", "0"], child.stderr[-2000:]


def test_the_compile_cache_serves_a_second_run_and_a_bad_one_is_only_a_warning(tmp_path):
  args = ACC + ["--config.synthetic.num_train=600", "--config.batch_sizes=(100,)",
                "--config.epochs=1"]
  cache = tmp_path / "cache"
  first = run_cli(*args, f"--compile_cache={cache}", f"--workdir={tmp_path / 'a'}")
  assert first.returncode == 0, first.stderr[-2000:]
  entries = lambda: {(e.name, e.stat().st_mtime_ns) for e in cache.iterdir()}
  written = entries()
  assert written  # the compiled programs were written
  second = run_cli(*args, f"--compile_cache={cache}", f"--workdir={tmp_path / 'b'}",
                   env={"JAX_DEBUG_LOG_MODULES": "jax._src.compiler"})  # JAX logs its hits
  assert second.returncode == 0
  # Every written program was loaded under its key, and none compiled again: a miss would
  # write an entry or rewrite one. Every program is stored, however quick its compile.
  # Not a timing: loads are not asserted faster here (BENCHMARKS.md measures the quickstart).
  hits = [line for line in second.stderr.splitlines() if "compilation cache hit" in line]
  for name, _ in written:
    assert any(f"with key '{name.removesuffix('-cache')}'" in line for line in hits), name
  assert entries() == written
  # the same results either way
  assert _records(tmp_path / "a")[0]["final_test_acc"] == _records(tmp_path / "b")[0][
      "final_test_acc"]
  # a cache folder that is a file: a warning, and the run goes on without it
  (tmp_path / "not_a_folder").write_text("x")
  bad = run_cli(*args, f"--compile_cache={tmp_path / 'not_a_folder'}",
                f"--workdir={tmp_path / 'c'}")
  assert bad.returncode == 0 and "warning: compile cache" in bad.stderr
  # corrupt entries are read as misses
  for entry in cache.rglob("*"):
    if entry.is_file():
      entry.write_bytes(b"garbage")
  corrupt = run_cli(*args, f"--compile_cache={cache}", f"--workdir={tmp_path / 'd'}")
  assert corrupt.returncode == 0, corrupt.stderr[-2000:]
  assert _records(tmp_path / "d")[0]["final_test_acc"] == _records(tmp_path / "a")[0][
      "final_test_acc"]


def test_the_report_is_drawn_after_each_study_that_added_records_or_once(tmp_path, monkeypatch):
  """cli._run redraws report.md after a study only when it added records (drawing takes
  seconds: a rerun of the finished quickstart drew it six times, 25 s in all, 10 s now),
  and once at the end of a run that added none."""
  import ml_collections
  from jbatch import cli
  from jbatch.results import report, store
  drawn = []
  monkeypatch.setattr(report, "write", lambda workdir, studies: drawn.append(
      len(store.read(workdir))))

  class Study:
    def __init__(self, adds):
      self.adds = adds

    def run(self, cfg, workload, workdir):
      if self.adds:
        store.append(workdir, {"study": "fake", "run_id": f"r{len(store.read(workdir))}",
                               "status": "ok"})

  config = ml_collections.ConfigDict({"study": "fake"})
  workdir = str(tmp_path / "run")
  cli._run(config, "{}", [(Study(True), None, None), (Study(False), None, None),
                                  (Study(True), None, None)], workdir)
  assert drawn == [1, 2]  # after the first and the third study, not the second
  drawn.clear()
  cli._run(config, "{}", [(Study(False), None, None), (Study(False), None, None)], workdir)
  assert drawn == [2]  # nothing new: once, at the end
