"""Probes against known answers: per-example norms two ways, noise scale in closed form,
Hessian eigenvalues of a quadratic."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import run_python
from jbatch import config as config_lib
from jbatch.errors import UserError
from jbatch.models import conv, registry
from jbatch.probes import noise_scale, per_example, sharpness
from jbatch.workloads.builtin import CLASSIFIER


def _model(name, shape, **settings):
  c = config_lib.base()
  c.model = name
  for k, v in settings.items():
    c[name][k] = v
  graphdef, params, state = nnx.split(registry.build(c, shape, 10, 0, "cpu"), nnx.Param, ...)
  x = jax.random.normal(jax.random.key(1), (8,) + shape)
  y = jnp.arange(8) % 10
  return graphdef, params, _random_batch_stats(state), x, y


def _random_batch_stats(state):
  """Running means and variances away from their initial 0 and 1, so that a path that
  ignored them (evaluation-mode BatchNorm normalizes by them) could not pass."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
  out = []
  for i, (path, leaf) in enumerate(leaves):
    names = [getattr(k, "key", None) for k in path]
    key = jax.random.key(100 + i)
    if "mean" in names:
      leaf = jax.random.normal(key, leaf.shape)
    elif "var" in names:
      leaf = jax.random.uniform(key, leaf.shape, minval=0.3, maxval=3.0)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


CASES = [("mlp", (20,), {}), ("cnn", (12, 12, 1), {"channels": (4, 8), "hidden": 16}),
         ("cnn", (12, 12, 1), {"channels": (4, 8), "hidden": 16, "batchnorm": True}),
         ("mobilenet_v2", (8, 8, 3), {"width": 0.35})]


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("name,shape,settings", CASES, ids=lambda c: str(c))
def test_fast_norms_equal_vmap_norms_and_mean_is_batch_gradient(name, shape, settings, chunked,
                                                                monkeypatch):
  """chunked: every convolution (the model's and the norms') runs one image at a time."""
  if name == "mlp" and chunked:
    pytest.skip("no convolutions")
  if name == "mobilenet_v2" and not chunked:
    pytest.skip("the chunked case runs the same code, one image per chunk (compiles are slow)")
  if chunked:
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)
  graphdef, params, state, x, y = _model(name, shape, **settings)
  fast = jax.jit(per_example.make(graphdef, CLASSIFIER, "fast", 0))(params, state, x, y)
  slow = jax.jit(per_example.make(graphdef, CLASSIFIER, "vmap", 8))(params, state, x, y)
  np.testing.assert_allclose(fast["sq_norms"], slow["sq_norms"], rtol=1e-5)
  assert fast["sq_norms"].shape == (8,) and np.all(np.asarray(fast["sq_norms"]) > 0)

  def mean_loss(p):  # BatchNorm in evaluation mode, as the per-example gradients take it
    logits = nnx.merge(graphdef, p, state, copy=True)(x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  batch_grad = jax.jit(jax.grad(mean_loss))(params)
  for got in (fast["grad_sum"], slow["grad_sum"]):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(batch_grad)):
      np.testing.assert_allclose(np.asarray(a) / 8, b, rtol=2e-4, atol=1e-6)


def test_vmap_chunk_must_divide_the_batch():
  graphdef, params, state, x, y = _model("mlp", (20,))
  with pytest.raises(UserError, match="chunk 3 does not divide the probe batch 8"):
    per_example.make(graphdef, CLASSIFIER, "vmap", 3)(params, state, x, y)
  with pytest.raises(UserError, match="unknown per-example method"):
    per_example.make(graphdef, CLASSIFIER, "ghost", 4)


def _regression(m, b, d=10, sigma=1.0, seed=0):
  """Batches of y = w*.x + noise with x ~ N(0, I), at w = w* + delta, |delta| = 1.

  The per-example gradient of 0.5 (w.x - y)^2 is (x x^T) delta - noise x, so
  G = delta, Sigma = delta delta^T + (|delta|^2 + sigma^2) I, and
  |G|^2 = 1, tr(Sigma) = 1 + d (1 + sigma^2): B_simple = 21 for d = 10, sigma = 1.
  """
  kx, kn = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (m, b, d))
  w_star = jnp.zeros(d)
  delta = jnp.ones(d) / jnp.sqrt(d)
  y = x @ w_star + sigma * jax.random.normal(kn, (m, b))
  return w_star + delta, x, y, 1.0, 1.0 + d * (1 + sigma ** 2)


def _mean_grad(w, x, y):
  return jax.grad(lambda w: 0.5 * jnp.mean((x @ w - y) ** 2))(w)


def test_noise_scale_per_example_matches_closed_form():
  w, x, y, g2_true, trace_true = _regression(4000, 64)

  def one(xy):
    xb, yb = xy
    grads = jax.vmap(lambda xi, yi: _mean_grad(w, xi[None], yi[None]))(xb, yb)
    return noise_scale.from_per_example(jnp.sum(grads ** 2, -1), grads.sum(0))

  g2, trace = jax.jit(lambda: jax.lax.map(one, (x, y)))()
  assert abs(float(g2.mean()) / g2_true - 1) < 0.05
  assert abs(float(trace.mean()) / trace_true - 1) < 0.05
  assert abs(noise_scale.b_simple(g2, trace) / 21 - 1) < 0.05


def test_noise_scale_two_batch_groups_matches_closed_form():
  w, x, y, g2_true, trace_true = _regression(4000, 64, seed=1)
  small, big = jax.jit(jax.vmap(lambda xb, yb: noise_scale.group_norms(_mean_grad, w, xb, yb, 8)))(x, y)
  g2, trace = noise_scale.two_batch(small, big, 8, 64)
  assert abs(float(g2.mean()) / g2_true - 1) < 0.05
  assert abs(float(trace.mean()) / trace_true - 1) < 0.05


def test_smoothed_b_simple_by_hand():
  # EMA with decay 0.9 from 0: trace 1.0, 1.9, |G|^2 0.1, 0.29 -> 10 and 1.9 / 0.29
  assert noise_scale.smoothed_b_simple([1.0, 2.0], [10.0, 10.0]) == pytest.approx(
      [10.0, 1.9 / 0.29])
  # a |G|^2 average at or below zero is below the noise: NaN, and below_noise says so
  out = noise_scale.smoothed_b_simple([0.1, -0.5], [1.0, 1.0])
  assert out[0] == pytest.approx(10.0) and np.isnan(out[1])
  assert [noise_scale.below_noise(v) for v in (5.0, -3.0, float("nan"), None)] == [
      False, True, True, True]


DEVICE_CODE = r"""
import json, jax, jax.numpy as jnp
from jbatch.probes import noise_scale
from jbatch.train import parallel
import sys; sys.path.insert(0, "tests")
from test_probes import _regression, _mean_grad
assert len(jax.devices()) == 8
w, x, y, g2_true, trace_true = _regression(2000, 64, seed=2)
mesh = parallel.make_mesh("cpu", 8)
per_device = noise_scale.device_norms(_mean_grad, mesh)
grouped = lambda xb, yb: noise_scale.group_norms(_mean_grad, w, xb, yb, 8)
dev = jax.jit(lambda: jax.lax.map(lambda xy: per_device(w, *xy), (x, y)))()
grp = jax.jit(lambda: jax.lax.map(lambda xy: grouped(*xy), (x, y)))()
hlo = jax.jit(per_device).lower(w, x[0], y[0]).compile().as_text()
g2, trace = noise_scale.two_batch(*dev, 8, 64)
print(json.dumps({"g2": float(g2.mean()), "trace": float(trace.mean()),
                  "max_diff": max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(dev, grp)),
                  "all_reduce": "all-reduce" in hlo}))
"""


def test_noise_scale_per_device_shard_map_on_8_devices():
  out = run_python(DEVICE_CODE, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert out.returncode == 0, out.stderr[-2000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert abs(got["g2"] - 1) < 0.05 and abs(got["trace"] / 21 - 1) < 0.05
  # One device per group computes what the groups computed one after another.
  assert got["max_diff"] < 1e-4 and got["all_reduce"]


def test_top_eigenvalue_of_a_quadratic():
  q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (6, 6)))
  a = q @ jnp.diag(jnp.array([5.0, 2.0, 1.0, 0.5, -1.0, 0.1])) @ q.T
  params = {"u": jnp.ones(4), "v": jnp.ones(2)}

  def loss(p):
    z = jnp.concatenate([p["u"], p["v"]])
    return 0.5 * z @ a @ z + jnp.sum(z)  # a linear term does not change the Hessian

  eig, change, used = jax.jit(lambda p: sharpness.top_eigenvalue(
      loss, p, jax.random.key(1), 60, tol=1e-7))(params)
  assert float(eig) == pytest.approx(5.0, rel=1e-4)
  assert float(change) <= 1e-7 and 2 < int(used) < 60  # stopped at the tolerance
  # cut short: three iterations, not converged, and the change it stopped at says so
  eig3, change3, used3 = sharpness.top_eigenvalue(loss, params, jax.random.key(1), 3, tol=1e-7)
  assert int(used3) == 3 and float(change3) > 1e-7


def test_batchnorm_in_training_mode_refuses_per_example_recording():
  from jbatch.models import tape as tape_lib
  graphdef, params, state, x, y = _model("mlp", (20,))
  model = nnx.merge(graphdef, params, state)
  with tape_lib.recording(tape_lib.Tape()):
    with pytest.raises(ValueError, match="evaluation mode"):
      model(x, train=True)
