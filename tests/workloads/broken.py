"""Workloads that are wrong in one way each, for the bad-input tests (test_workloads.py)."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jbatch.workloads import Workload, splits


def _data(n=64, dim=4, x_dtype=np.float32, test_shape=None, test_n=32):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, dim))
  test_x = rng.standard_normal((test_n, *(test_shape or (dim,)))).astype(np.float32)
  return splits(train=(x.astype(x_dtype), x.sum(1)),
                test=(test_x, test_x.reshape(test_n, -1).sum(1) if test_n else test_x[:, 0]))


def _workload(**changes):
  fields = dict(name="broken", model=lambda seed: nnx.Linear(4, 1, rngs=nnx.Rngs(seed)),
                loss=lambda p, y: 0.5 * jnp.square(p[:, 0] - y), data=_data)
  fields.update(changes)
  return Workload(**fields)


def good(config):
  return _workload()


def raises(config):
  raise RuntimeError("the cluster is down")


def not_a_workload(config):
  return {"model": None}


def output_does_not_fit(config):  # (n, 3) predictions flattened against (n,) targets
  return _workload(model=lambda seed: nnx.Linear(4, 3, rngs=nnx.Rngs(seed)),
                   loss=lambda p, y: jnp.square(p.reshape(-1) - y))


def loss_not_per_example(config):
  return _workload(loss=lambda p, y: jnp.mean(jnp.square(p[:, 0] - y)))


def loss_not_finite(config):
  return _workload(loss=lambda p, y: jnp.log(p[:, 0] * 0.0))


def wrong_dtype(config):
  return _workload(data=lambda: _data(x_dtype=np.str_))


def wrong_shape(config):
  return _workload(data=lambda: _data(test_shape=(5,)))


def empty_split(config):
  return _workload(data=lambda: _data(test_n=0))


class _Raw(nnx.Module):
  """A product that no layer jbatch knows computes: precision cannot reach it."""

  def __init__(self, rngs):
    self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (4, 1)))

  def __call__(self, x):
    return x @ self.w[...]


def raw_parameter(config):
  return _workload(model=lambda seed: _Raw(nnx.Rngs(seed)))
