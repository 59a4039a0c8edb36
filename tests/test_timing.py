import jax
import jax.numpy as jnp

from jbatch.bench import timing


def test_cost_analysis_counts_a_matmul_by_hand():
  m, k, n = 64, 128, 32
  exe, seconds = timing.compile_timed(jax.jit(lambda a, b: a @ b), jnp.ones((m, k)), jnp.ones((k, n)))
  assert seconds > 0
  assert timing.cost(exe)["flops"] == 2 * m * k * n
  mem = timing.memory(exe)
  assert mem["xla_argument_bytes"] == 4 * (m * k + k * n)


def test_spread():
  s = timing.spread([3.0, 1.0, 2.0, 10.0])
  assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["repeats"] == 4
