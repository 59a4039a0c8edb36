"""The largest batch whose train step fits in memory (seeds/003: "what is the largest batch
that fits").

A batch fits when XLA's planned bytes for one train step (arguments, outputs
and temporaries, from compiling it for that shape; nothing is allocated) are
within the budget, and, where `run` is set (a GPU), when the step also runs
once on real zeros without running out of memory. Doubling from `start`
finds a batch that does not fit, then bisection the largest that does; the
planned bytes grow with the batch, so the answer is exact for them.
"""

import os

import jax
import jax.numpy as jnp

from jbatch.bench import timing


def planned_bytes(train_step, state, example_shape, batch_size):
  """XLA's planned bytes for one train step at this batch size (compiled, not run)."""
  x = jax.ShapeDtypeStruct((batch_size, *example_shape), jnp.float32)
  y = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
  compiled = jax.jit(train_step).lower(state, x, y).compile()
  return timing.memory(compiled).get("xla_total_bytes")


def runs(train_step, state, example_shape, batch_size):
  """Whether the step runs once at this batch size (False on out-of-memory)."""
  try:
    x = jnp.zeros((batch_size, *example_shape), jnp.float32)
    y = jnp.zeros((batch_size,), jnp.int32)
    jax.block_until_ready(jax.jit(train_step)(state, x, y))
    return True
  except Exception as exc:  # XlaRuntimeError: RESOURCE_EXHAUSTED
    if "RESOURCE_EXHAUSTED" in str(exc) or "out of memory" in str(exc).lower():
      return False
    raise


def budget_bytes(device, configured=0):
  """The memory a step may plan for: configured, else the device's limit (GPU), else RAM."""
  if configured:
    return int(configured)
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def largest_batch(fits, start=1, limit=1 << 24):
  """(largest b in [1, limit] with fits(b), {b: fits(b)} for every b tried); 0 if none fits."""
  tried = {}

  def check(b):
    if b not in tried:
      tried[b] = bool(fits(b))
    return tried[b]

  lo, hi = 0, start
  while hi <= limit and check(hi):  # grow until a batch does not fit
    lo, hi = hi, hi * 2
  if hi > limit:
    hi = limit + 1
    if check(limit):
      return limit, tried
  while hi - lo > 1:  # lo fits (or is 0), hi does not
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if check(mid) else (lo, mid)
  return lo, tried
