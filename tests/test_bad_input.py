"""The whole table of bad inputs the README lists: each is one line `jbatch: error: ...`,
exit status 2, and leaves an existing run folder byte for byte as it was."""

import os
import struct

import numpy as np
import pytest

from conftest import REPO, run_cli

E = f"{REPO}/experiments"
BASES = {  # small settings of each study, so that a valid run would be quick
    "throughput": [f"--config={E}/throughput_small.py", "--config.epochs=1",
                   "--config.synthetic.num_train=20000", "--config.max_batch=False",
                   "--config.pow2_probe=()"],
    "accuracy": [f"--config={E}/accuracy_small.py", "--config.dataset=synthetic",
                 "--config.model=mlp", "--config.synthetic.num_train=4000",
                 "--config.synthetic.num_test=1000", "--config.eval_train_examples=1000"],
    "dynamics": [f"--config={E}/dynamics_small.py", "--config.dataset=synthetic",
                 "--config.synthetic.num_train=512", "--config.synthetic.num_test=256",
                 "--config.synthetic.input_shape=(16,)", "--config.model=mlp",
                 "--config.epochs=1", "--config.probes.every_examples=256",
                 "--config.probes.batch_size=64", "--config.accumulation.steps=()"],
    "loader": [f"--config={E}/loader_small.py", "--config.images.source=synthetic",
               "--config.images.count=64", "--config.images.size=32", "--config.crop_size=16",
               "--config.batch_size=16", "--config.model=cnn", "--config.cnn.channels=(4,)"],
    "determinism": [f"--config={E}/seed000_determinism.py", "--config.synthetic.num_train=512"],
    "critical_batch": [f"--config={E}/critical_batch_small.py", "--config.dataset=synthetic",
                       "--config.synthetic.num_train=2500", "--config.synthetic.input_shape=(16,)",
                       "--config.validation_examples=500", "--config.train_subset=0",
                       "--config.max_batch=False"],
    # a user's workload: tests/workloads/broken.py, wrong in one way per function
    "workload": [f"--config={E}/critical_batch_linreg.py", "--config.batch_sizes=(4,)",
                 "--config.seeds=(0,)"],
}
W = f"--config.workload={REPO}/tests/workloads/broken.py"
WF = "tests/workloads/broken.py"

# (study, arguments after its base, what the one line must say). The README's table of bad
# inputs lists these.
TABLE = [
    ("throughput", ["--config.batch_sizes=(0,)"], "not a positive integer"),
    ("throughput", ["--config.batch_sizes=(9999999,)"], "larger than the 20000 training"),
    ("throughput", ["--config.model=nope"], "unknown model 'nope'"),
    ("throughput", ["--config.dataset=nope"], "unknown dataset 'nope'"),
    ("throughput", ["--config.dataset=mnist", "--config.data_dir=/nonexistent"],
     "no train-images-idx3-ubyte"),
    ("throughput", ["--config.variants=('jax_slow',)"], "unknown variant"),
    ("throughput", ["--config.last_batch=keep"], "last_batch='keep'"),
    ("throughput", ["--config.optimizer.name=lamb"], "unknown optimizer"),
    ("throughput", ["--config.no_such_field=1"], "no field"),
    ("throughput", ["--config.epochs=abc"], "--config.epochs"),
    ("throughput", ["--config.num_devices=-1"], "num_devices=-1"),
    ("throughput", ["--config.examples=-5"], "examples=-5"),
    ("throughput", ["--config.memory_budget=-1"], "memory_budget must be >= 0"),
    ("accuracy", ["--config.rules=cubic"], "unknown LR scaling rule"),
    ("accuracy", ["--config.schedule.warmup_epochs=3"], "not shorter than"),
    ("accuracy", ["--config.examples=6000", "--config.schedule.warmup_epochs=1.5"],
     "not shorter than the 1.5 epochs"),
    ("accuracy", ["--config.inits=pretrained", "--config.init_checkpoint=/no/such/run"],
     "does not exist"),
    ("accuracy", ["--config.inits=pretrained"], "init_checkpoint is empty"),
    ("accuracy", ["--config.optimizers=lbfgs"], "base learning rate"),
    ("accuracy", ["--config.inits=warm"], "unknown init"),
    ("accuracy", ["--config.seeds=()"], "seeds is empty"),
    ("accuracy", ["--config.eval_batch_size=0"], "eval_batch_size=0"),
    ("accuracy", ["--config.eval_every=100000"], "eval_every=100000 steps is longer than"),
    ("accuracy", ["--config.eval_every=-1"], "eval_every and eval_every_examples must be"),
    ("accuracy", ["--config.eval_every=5", "--config.eval_every_examples=50"],
     "give one of them"),
    ("accuracy", ["--config.target.metric=f1"], "unknown target metric 'f1'"),
    ("accuracy", ["--config.target.metric=acc", "--config.target.value=1.5"], "outside (0, 1)"),
    ("accuracy", ["--config.validation_examples=4000"], "is not smaller than the 4000"),
    ("accuracy", ["--config.target.metric=acc", "--config.target.value=0.5",
                  "--config.target.split=validation"], "needs a validation split"),
    ("accuracy", ["--config.dataset=mnist", "DATA=labels"], "label(s) outside [0, 10)"),
    ("dynamics", ["--config.probes.every_examples=0"], "probe interval is 0"),
    ("dynamics", ["--config.probes.every=10"], "give one of them"),
    ("dynamics", ["--config.probes.method=vmap", "--config.probes.chunk=7"],
     "does not divide the probe batch"),
    ("dynamics", ["--config.probes.method=ghost"], "unknown probes.method"),
    ("dynamics", ["--config.probes.groups=64"], "does not split into 64 groups"),
    ("dynamics", ["--config.accumulation.steps=(0,)"], "accumulation.steps"),
    ("dynamics", ["--config.sharpness.tol=-1"], "sharpness.iters and sharpness.tol"),
    ("loader", ["--config.workers=(-2,)"], "give counts >= 0"),
    ("loader", ["--config.backends=dali"], "unknown loader backend"),
    ("loader", ["--config.images.folder=/no/such/folder"], "does not exist"),
    ("loader", ["--config.batch_size=65"], "larger than the 64 images"),
    ("loader", ["--config.images.source=imagenet"], "unknown image source"),
    ("determinism", ["--config.runs=1"], "give runs >= 2"),
    ("determinism", ["--config.modes=fast"], "unknown mode"),
    ("critical_batch", ["--config.lr_range=(0.5,0.1)"], "empty or inverted"),
    ("critical_batch", ["--config.lr_range=(0.1,0.1)"], "empty or inverted"),
    ("critical_batch", ["--config.trials=0"], "trials=0"),
    ("critical_batch", ["--config.batch_sizes=(128,)", "--config.max_examples=100"],
     "below one batch of 128"),
    ("critical_batch", ["--config.batch_sizes=(4000,)"], "larger than the 2000 training"),
    ("critical_batch", ["--config.target.metric="], "needs a target"),
    ("critical_batch", ["--config.search=grid"], "unknown search 'grid'"),
    ("cli", ["WORKDIR=file"], "is a file, not a folder"),
    ("cli", ["--coordinator_address=127.0.0.1:1234", "--num_processes=0", "--process_id=0"],
     "--num_processes=0; give 1 or more"),
    ("cli", ["--coordinator_address=127.0.0.1:1234", "--num_processes=2", "--process_id=2"],
     "--process_id=2 with --num_processes=2"),
    ("cli", ["--coordinator_address=localhost", "--num_processes=2", "--process_id=1"],
     "is not HOST:PORT"),
    ("cli", ["--coordinator_address=127.0.0.1:99999", "--num_processes=2", "--process_id=1"],
     "is not HOST:PORT"),
    ("cli", ["--num_processes=2", "--process_id=1"], "needs all three"),
    ("cli", ["--workers=0"], "--workers=0; give 1 or more"),
    ("cli", ["--workers=2", "--coordinator_address=127.0.0.1:1234", "--num_processes=2",
             "--process_id=0"], "does not combine"),
    ("cli", ["WORKDIR=under_file"], "which is a file"),
    ("workload", ["--config.workload=nowhere/mine.py:workload"], "file nowhere/mine.py does not"),
    ("workload", ["--config.workload=no_such_package.models:workload"],
     "no module 'no_such_package.models'"),
    ("workload", ["--config.workload=examples/linear_regression.py"], "give FILE.py:NAME"),
    ("workload", [f"{W}:missing"], f"{WF}:missing: no callable 'missing'"),
    ("workload", [f"{W}:raises"], "raises: raises(workload_config) raised RuntimeError: the "
                                  "cluster is down"),
    ("workload", [f"{W}:not_a_workload"], "returned dict, not a jbatch.workloads.Workload"),
    ("workload", [f"{W}:output_does_not_fit"], "the model's output does not fit the loss"),
    ("workload", [f"{W}:loss_not_per_example"], "return one loss per example, shape (4,)"),
    ("workload", [f"{W}:loss_not_finite"], "loss is not finite at the initial weights"),
    ("workload", [f"{W}:wrong_dtype"], "the train inputs are <U"),
    ("workload", [f"{W}:wrong_shape"], "test examples are (5,) -> (), the training ones (4,)"),
    ("workload", [f"{W}:empty_split"], "empty test split"),
    ("workload", [f"{W}:good", "--config.target.metric=acc"],
     f"{WF}:good: target metric 'acc' is not one it reports; choose one of loss"),
    ("workload", [f"{W}:raw_parameter", "--config.precision=bfloat16"],
     "raw_parameter: precision=bfloat16 reaches"),
    ("workload", [f"{W}:good", "--config.study=loader"], "does not take workload"),
    ("workload", ["--config.critical_batch.workload_config.dim=3"],
     "no section critical_batch for --config.critical_batch.workload_config.dim"),
    ("throughput", [f"{W}:good"], "variant torch_eager needs a PyTorch twin"),
    ("throughput", ["--config.model=resnet18", "--config.synthetic.input_shape=(8,8,3)"],
     "workload resnet18/synthetic has none"),
    ("critical_batch", ["--config.target.stop=False"], "set --config.target.stop=True"),
    ("workload", ["--config.probes.enabled=True", "--config.trials_vmapped=False",
                  "--config.probes.batch_size=64", "--config.probes.every_examples=64"],
     "linear_regression.py:workload: the fast per-example path covers 0 of 8 parameters"),
    ("accuracy", ["--config.target_acc=0.5"], "no field"),
]


def _idx(path, magic, array):
  with open(path, "wb") as f:
    f.write(struct.pack(f">{1 + array.ndim}i", magic, *array.shape))
    f.write(array.astype(np.uint8).tobytes())


def _mnist_with_bad_labels(folder):
  """Tiny MNIST idx files whose labels include 12 (a corrupt file)."""
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 600)
  labels[17] = 12
  _idx(os.path.join(folder, "train-images-idx3-ubyte"), 2051, rng.integers(0, 255, (600, 28, 28)))
  _idx(os.path.join(folder, "train-labels-idx1-ubyte"), 2049, labels)
  _idx(os.path.join(folder, "t10k-images-idx3-ubyte"), 2051, rng.integers(0, 255, (100, 28, 28)))
  _idx(os.path.join(folder, "t10k-labels-idx1-ubyte"), 2049, rng.integers(0, 10, 100))


def _existing_run_folder(path):
  """A folder with results of an earlier run: none of it may change."""
  os.makedirs(path / "checkpoints" / "a_run" / "3")
  (path / "results.jsonl").write_text('{"study": "accuracy", "run_id": "x", "status": "ok"}\n')
  (path / "config.json").write_text('{"earlier": true}\n')
  (path / "report.md").write_text("# an earlier report\n")
  (path / "checkpoints" / "a_run" / "3" / "state").write_bytes(b"\x00\x01checkpoint")


def _tree(path):
  return {os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
          for d, _, files in os.walk(path) for f in files}


@pytest.mark.parametrize("study, args, message", TABLE,
                         ids=[f"{s}-{m[:30]}" for s, a, m in TABLE])
def test_bad_input(tmp_path, fast_cli, study, args, message):
  workdir = tmp_path / "run"
  _existing_run_folder(workdir)
  before = _tree(workdir)
  base = BASES.get(study, BASES["throughput"])
  extra = []
  for a in args:
    if a == "DATA=labels":
      _mnist_with_bad_labels(tmp_path / "data" / "mnist")
      extra.append(f"--config.data_dir={tmp_path / 'data'}")
    elif a == "WORKDIR=file":
      workdir = tmp_path / "a_file"
      workdir.write_text("not a folder")
    elif a == "WORKDIR=under_file":
      (tmp_path / "a_file").write_text("not a folder")
      workdir = tmp_path / "a_file" / "run"
    else:
      extra.append(a)
  proc = fast_cli(*base, *extra, f"--workdir={workdir}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("jbatch: error: "), proc.stderr[-3000:]
  assert message in lines[0], lines[0]
  assert _tree(tmp_path / "run") == before  # byte for byte


def test_a_late_error_leaves_no_new_folder(tmp_path):
  # The labels are read only once the data loads, after validation; the new folder the
  # run made for itself must not stay behind with a config.json.
  _mnist_with_bad_labels(tmp_path / "data" / "mnist")
  workdir = tmp_path / "new"
  proc = run_cli(*BASES["accuracy"], "--config.dataset=mnist",
                 f"--config.data_dir={tmp_path / 'data'}", f"--workdir={workdir}")
  assert proc.returncode == 2 and "label(s) outside" in proc.stderr
  assert not workdir.exists()


def test_non_finite_inputs_are_refused():
  from jbatch.data import registry, synthetic
  from jbatch.errors import UserError
  ds = synthetic.make(100, 20, (4,), 3, seed=0)
  registry._check_values(ds, "synthetic")  # clean data passes
  ds.train_x[7, 2] = np.nan
  ds.test_x[3, 0] = np.inf
  with pytest.raises(UserError, match=r"1 NaN or infinite value\(s\) in the training inputs, "
                                      "the first in example 7"):
    registry._check_values(ds, "synthetic")
