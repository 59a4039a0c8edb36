"""The workload interface: built-ins on the same path with their run ids unchanged, a user's
workload from a file (its code in its run id), the closed-form critical batch of the
linear-regression example, the user classifier through two studies, the Python API."""

import inspect
import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import REPO, run_cli
from jbatch import config as config_lib, workloads
from jbatch.errors import UserError
from jbatch.results import scaling
from jbatch.studies import STUDIES, critical_batch
from jbatch.train import loop, optim, parallel, plan as plan_lib, point as point_lib

sys.path.insert(0, os.path.join(REPO, "examples"))
import linear_regression  # noqa: E402

E, X = f"{REPO}/experiments", f"{REPO}/examples"
LINREG = f"{X}/linear_regression.py:workload"


def _quickstart():
  return config_lib.from_file(f"{E}/quickstart.py", "quickstart")


def test_the_quickstarts_run_ids_are_those_from_before_workloads():
  # tests/data/quickstart_run_ids.json: the grids of the commit before the workload
  # interface (1479642), at the quickstart's training-set sizes: a finished quickstart
  # resumes every point after the change.
  want = json.load(open(f"{REPO}/tests/data/quickstart_run_ids.json"))
  sizes = {"throughput": 20000, "accuracy": 1000, "dynamics": 4096, "determinism": 1024,
           "critical_batch": 5000}
  c = _quickstart()
  for name in c.suite:
    grid = STUDIES[name].grid
    args = (c[name],) if len(inspect.signature(grid).parameters) == 1 else (c[name], sizes[name])
    assert sorted(p["run_id"] for p in grid(*args)) == want[name], name


def _linreg_config(**fields):
  c = config_lib.from_file(f"{E}/critical_batch_linreg.py", "critical_batch_linreg")
  c.workload_config.update(fields)
  return c


def _ids(c):
  w = workloads.from_config(c)
  cfg = workloads.bind(c, w)
  return {p["run_id"] for p in critical_batch.grid(cfg, 8192)}, w


def test_a_user_workloads_run_ids_cover_its_code_and_settings(tmp_path):
  folder = tmp_path / "mine"
  folder.mkdir()
  shutil.copy(f"{X}/linear_regression.py", folder / "regression.py")
  (folder / "helper.py").write_text("SCALE = 1.0\n")
  src = (folder / "regression.py").read_text()
  (folder / "regression.py").write_text(src.replace(
      "import jax.numpy as jnp", "import helper\nimport jax.numpy as jnp"))
  c = _linreg_config()
  c.workload = f"{folder}/regression.py:workload"
  first, w = _ids(c)
  assert w.source == c.workload and len(w.source_hash) == 12
  assert _ids(c)[0] == first  # the same code and settings: the same ids
  c.workload_config.noise = 0.5
  assert _ids(c)[0].isdisjoint(first)  # another setting
  c.workload_config.noise = 1.0
  (folder / "helper.py").write_text("SCALE = 2.0\n")  # a file beside it that it imports
  assert _ids(c)[0].isdisjoint(first)
  (folder / "helper.py").write_text("SCALE = 1.0\n")
  assert _ids(c)[0] == first
  (folder / "regression.py").write_text((folder / "regression.py").read_text().replace(
      "use_bias=False", "use_bias=True"))  # the model's code
  assert _ids(c)[0].isdisjoint(first)


def test_a_user_workloads_fused_epoch_is_plain_sgd_on_its_loss():
  """The engine's epoch on the linear-regression workload equals SGD written by hand over
  the same permutation: the loss, its mean over the batch and the update are the user's."""
  c = _linreg_config(num_train=1000)
  c.optimizer.learning_rate, c.num_devices = 0.05, 1
  w = workloads.from_config(c)
  data = workloads.load_data(c, w)
  plan = plan_lib.make(data.num_train, 100, "drop", epochs=1)
  p = point_lib.setup(c, w, data, batch_size=100, seed=0, plan=plan)
  x, y = p.train_arrays()
  state, metrics = p.engine.fused_epoch(plan)(p.engine.state, x, y, loop.epoch_key(0, 0))
  perm = np.asarray(jax.random.key_data(loop.epoch_key(0, 0)))  # noqa: F841 (drawn below)
  from jbatch.data import shuffle
  order = np.asarray(shuffle.permutation(loop.epoch_key(0, 0), data.num_train))
  weights, losses = np.zeros(8), []
  for i in range(10):
    idx = order[i * 100:(i + 1) * 100]
    r = data.train_x[idx] @ weights - data.train_y[idx]
    losses.append(0.5 * np.sum(r ** 2))
    weights = weights - 0.05 * data.train_x[idx].T @ r / 100
  kernel = np.asarray(jax.tree.leaves(state.params)[0])[:, 0]
  np.testing.assert_allclose(kernel, weights, rtol=2e-5, atol=1e-6)
  assert int(metrics["count"]) == 1000 and set(metrics) == {"loss", "count"}
  np.testing.assert_allclose(float(metrics["loss"]), sum(losses), rtol=1e-5)


def test_per_example_norms_of_a_user_workload_by_vmap_are_the_closed_form():
  # For 0.5 (x.w - y)^2 the gradient of one example is r x, so |g|^2 = r^2 |x|^2.
  from jbatch.probes import per_example
  c = _linreg_config(num_train=256)
  w = workloads.from_config(c)
  data = workloads.load_data(c, w)
  model = w.build_model(0, "cpu")
  model.kernel[...] = jnp.full((8, 1), 0.3)
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  x, y = data.train_x[:64], data.train_y[:64]
  out = jax.jit(per_example.make(graphdef, w, "vmap", 16))(params, state, x, y)
  r = x @ np.full(8, 0.3) - y
  np.testing.assert_allclose(out["sq_norms"], r ** 2 * np.sum(x ** 2, 1), rtol=1e-4)
  with pytest.raises(UserError, match="probes.method=vmap"):
    jax.eval_shape(per_example.make(graphdef, w, "fast", 0), params, state, x, y)


# The closed-form noise scale at the target (STUDIES.md S5) against the B_crit the study
# fits: 14 against 15 (d 8, noise 1: the defaults) and 6.25 against 8 (d 4, noise 0.5)
# measured on 2026-12-08; settings where B_simple changes more along the way to the
# target fit further from it (docs/workloads.md).
@pytest.mark.parametrize("dim, noise", [(8, 1.0), (4, 0.5)])
def test_the_linear_regression_b_crit_lands_near_its_closed_form_noise_scale(tmp_path, dim,
                                                                             noise):
  out = run_cli(f"--config={E}/critical_batch_linreg.py", f"--workdir={tmp_path}",
                f"--config.workload_config.dim={dim}", f"--config.workload_config.noise={noise}",
                "--config.max_examples=1024", "--config.batch_sizes=(1,2,4,8,16,32,64,128)")
  assert out.returncode == 0, out.stderr[-3000:]
  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  assert {r["workload_source"] for r in records} == {LINREG}
  target = records[0]["target"]
  assert target["metric"] == "loss" and target["split"] == "validation"
  closed = linear_regression.b_simple_at_loss(dim, noise, target["value"])
  by_b = {}
  for r in records:
    by_b.setdefault(r["batch_size"], []).append(r)
  fitted = scaling.fit_points(by_b)["fit"]
  assert closed / 1.5 <= fitted["b_crit"] <= closed * 1.5, (fitted, closed)


def _mnist_classifier(study, tmp_path, *args):
  return run_cli(f"--config={E}/mnist_classifier.py", f"--config.study={study}",
                 f"--workdir={tmp_path}", *args)


def test_the_user_classifier_runs_through_throughput_and_critical_batch(tmp_path, mnist_dir):
  out = run_cli(f"--config={E}/mnist_classifier.py", f"--workdir={tmp_path}",
                f"--config.throughput.workload_config.data_dir={mnist_dir}",
                f"--config.critical_batch.workload_config.data_dir={mnist_dir}",
                "--config.throughput.batch_sizes=(1000,)", "--config.throughput.epochs=1",
                "--config.critical_batch.train_subset=4000",
                "--config.critical_batch.batch_sizes=(64,256)",
                "--config.critical_batch.trials=2", "--config.critical_batch.max_examples=40000",
                "--config.critical_batch.target.metric=acc",
                "--config.critical_batch.target.value=0.9",
                "--config.critical_batch.probes.every_examples=8192",
                "--config.critical_batch.speed.steps=0")
  assert out.returncode == 0, out.stderr[-3000:]
  records = {r["run_id"].split("/")[1] + "/" + r["run_id"].split("/")[2]: r
             for r in map(json.loads, open(tmp_path / "results.jsonl"))}
  fused, torch = records["jax_fused/cpu"], records["torch_eager/cpu"]
  assert fused["status"] == torch["status"] == "ok"
  assert fused["workload"] == "mnist_mlp128" and fused["workload_hash"]
  # the same weights and data order are not shared, but both learn the same task
  assert fused["train_acc"] > 0.8 and torch["train_acc"] > 0.8
  cb = [r for r in records.values() if r["study"] == "critical_batch"]
  assert {r["batch_size"] for r in cb} == {64, 256}
  assert all(r["status"] == "ok" and r["steps_to_target"] for r in cb)
  assert all(r["probe_count"] >= 1 and r["b_simple_mean"] for r in cb)  # vmap's norms
  assert "B_crit" in open(tmp_path / "report.md").read()


def test_the_user_classifiers_torch_twin_has_its_weights(mnist_dir):
  torch = pytest.importorskip("torch")
  import mnist_classifier
  w = mnist_classifier.workload(ml_collections.ConfigDict(dict(data_dir=mnist_dir, hidden=32)))
  model = w.build_model(3, "cpu")
  twin, loss = w.torch_twin(model)
  x = w.data().test_x[:16]
  want = np.asarray(model(jnp.asarray(x)))
  got = twin(torch.from_numpy(x)).detach().numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  y = w.data().test_y[:16]
  np.testing.assert_allclose(loss(torch.from_numpy(got), torch.from_numpy(y.astype(np.int64)))
                             .numpy(), np.asarray(w.loss(jnp.asarray(want), y)), rtol=1e-5)


def test_bfloat16_reaches_plain_nnx_layers_and_a_layer_it_cannot_reach_is_refused():
  from jbatch.models import registry
  sys.path.insert(0, os.path.join(REPO, "tests", "workloads"))
  import broken
  c = config_lib.base()
  c.precision = "bfloat16"
  model = point_lib.build_model(c, broken.good(c), 0, "cpu")
  assert model.dtype == jnp.bfloat16 and model.kernel.dtype == jnp.float32
  x = jnp.ones((2, 4))
  assert model(x).dtype == jnp.bfloat16
  with pytest.raises(UserError, match="parameter w is in another layer"):
    registry.set_precision(broken.raw_parameter(c).build_model(0, "cpu"), "bfloat16")


def test_the_python_api_runs_a_workload_object_and_resumes(tmp_path):
  from jbatch import api
  w = linear_regression.workload(ml_collections.ConfigDict(dict(dim=4, noise=0.5,
                                                                num_train=2048)))
  c = _linreg_config()
  c.workload, c.batch_sizes, c.seeds, c.trials, c.max_examples = "", (4, 32), (0,), 4, 256
  records = api.run_study("critical_batch", w, str(tmp_path), c)
  assert [r["batch_size"] for r in records] == [4, 32]
  assert all(r["status"] == "ok" and r["workload_source"] == "python:" + w.name
             for r in records)
  again = api.run_study("critical_batch", w, str(tmp_path), c)
  assert again == records  # resumed: nothing ran again
  other = linear_regression.workload(ml_collections.ConfigDict(dict(dim=4, noise=0.5,
                                                                    num_train=2048, seed=1)))
  assert api.identified(other).source_hash != records[0]["workload_hash"]  # other data
  with pytest.raises(UserError, match="unknown study"):
    api.run_study("nope", w, str(tmp_path), c)


def test_a_module_path_names_a_workload_too():
  c = _linreg_config()
  c.workload = "linear_regression:workload"  # examples/ is on sys.path here
  ids, w = _ids(c)
  assert w.source == "linear_regression:workload" and w.name == "linear_regression_d8_noise1"
  assert ids == _ids(_linreg_config())[0]  # the same code: where it is found does not count


def test_the_dynamics_study_on_the_linear_regression(tmp_path):
  """Per-example norms by vmap and the noise scale from groups on a user's model: B_simple
  at w = 0 is (d + 1) + d noise^2 / |w*|^2 = 9 + 8 / 8 = 10 (STUDIES.md S5)."""
  out = run_cli(f"--config={E}/dynamics_small.py", f"--workdir={tmp_path}",
                f"--config.workload={LINREG}",
                "--config.workload_config.dim=8", "--config.workload_config.num_train=4096",
                "--config.train_subset=0", "--config.batch_sizes=(64,)",
                "--config.optimizers=sgd", "--config.epochs=1", "--config.probes.method=vmap",
                "--config.probes.batch_size=4096", "--config.probes.chunk=256",
                "--config.probes.groups=8", "--config.probes.every_examples=4096",
                "--config.accumulation.steps=(2,)", "--config.sharpness.iters=30")
  assert out.returncode == 0, out.stderr[-3000:]
  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  train = next(r for r in records if r["kind"] == "train")
  first = train["history"][0]["probes"][0]
  assert first["step"] == 0 and first["distance"] == 0.0
  assert 8 < first["trace"] / first["g2"] < 12  # per-example, at the initial weights
  assert 6 < first["trace_groups"] / first["g2_groups"] < 15  # from 8 groups: noisier
  # the Hessian of the mean of 0.5 (x.w - y)^2 over the m examples is X^T X / m
  data = linear_regression.workload(ml_collections.ConfigDict(dict(dim=8, num_train=4096))).data()
  x = data.train_x[:train["sharpness_examples"]].astype(np.float64)
  top = np.linalg.eigvalsh(x.T @ x / len(x))[-1]
  # power iteration's Rayleigh quotient approaches it from below
  assert 0.99 * top < train["sharpness"] <= top * (1 + 1e-5), (train["sharpness"], top)
  acc = next(r for r in records if r["kind"] == "accumulation")
  assert acc["max_abs_param_diff"] < 1e-5 * max(acc["max_abs_param"], 1)  # no BatchNorm
