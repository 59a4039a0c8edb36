import time

import jax
import jax.numpy as jnp
from flax import nnx

from jbatch.bench import timing
from jbatch.models import conv


def test_cost_analysis_counts_a_matmul_by_hand():
  m, k, n = 64, 128, 32
  t0 = time.perf_counter()
  exe, seconds = timing.compile_timed(jax.jit(lambda a, b: a @ b), jnp.ones((m, k)), jnp.ones((k, n)))
  assert 0 < seconds <= time.perf_counter() - t0  # the compile, inside the call's own time
  assert timing.cost(exe)["flops"] == 2 * m * k * n
  mem = timing.memory(exe)
  assert mem["xla_argument_bytes"] == 4 * (m * k + k * n)


def test_timed_and_median_against_a_known_sleep():
  _, seconds = timing.timed(lambda: time.sleep(0.05))
  assert 0.05 <= seconds < 0.5
  calls = []
  assert 0.02 <= timing.median_seconds(lambda: calls.append(time.sleep(0.02)), 3, warmup=2) < 0.3
  assert len(calls) == 5  # two warm-up calls, three timed


def test_spread():
  s = timing.spread([3.0, 1.0, 2.0, 10.0])
  assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["repeats"] == 4


def test_step_flops_counts_every_chunk_of_a_convolution():
  layer = conv.Conv(32, 64, 3, use_bias=False, impl="im2col", rngs=nnx.Rngs(0))
  x = jnp.zeros((16, 26, 26, 32))
  assert layer.geometry(x, layer.kernel[...])[3] == 4  # four loop steps of 4 images
  by_hand = 2 * 16 * 24 * 24 * (3 * 3 * 32) * 64  # the forward's one product per chunk
  forward = lambda x: layer(x)
  assert timing.step_flops(forward, x) == by_hand
  assert timing.cost(jax.jit(forward).lower(x))["flops"] < by_hand / 2  # the loop body once
  assert layer.geometry(x, layer.kernel[...])[3] == 4  # chunking restored
