"""The largest batch whose train step fits in memory (seeds/003: "what is the largest batch
that fits").

A batch fits when XLA's planned bytes for one train step (arguments, outputs
and temporaries, from compiling it for that shape; nothing is allocated) are
within the budget, and, where `run` is set (a GPU), when the step also runs
once on real zeros without running out of memory. The search brackets the
boundary and narrows the bracket to one batch, jumping to where the line through
two planned sizes crosses the budget (the plan is nearly affine in the batch)
and bisecting where that guess fails to halve the bracket.

The plan is not smooth near one batch: a chunked MLP's ragged last chunk, the
blocked weight gradient's rows past a whole block and XLA's packing of buffers
into heaps make it jump by up to 2% between neighbouring
batches (190,464 rows: 266.4 MB, 190,465: 272.4 MB; 189,652: 261.9 MB, below
186,315's 262.2 MB). A boundary narrower than that says nothing a user can
use and cost 21 compiles of 2 s each, so the search stops once the batch that
does not fit is within RESOLUTION of the one that does, and records both.
"""

import os

import jax
import jax.numpy as jnp

from jbatch.bench import timing

RESOLUTION = 0.01  # of the batch: the plan itself wiggles by about this much


def example_spec(dataset):
  """((shape, dtype) of one input, of one target): what a batch of the dataset is made of."""
  return ((dataset.train_x.shape[1:], dataset.train_x.dtype),
          (dataset.train_y.shape[1:], dataset.train_y.dtype))


def _spec(example, batch_size):
  if not isinstance(example[0], tuple):  # an input shape alone: class labels beside it
    example = ((tuple(example), jnp.float32), ((), jnp.int32))
  return [((batch_size, *shape), dtype) for shape, dtype in example]


def planned_bytes(step, state, example, batch_size):
  """XLA's planned bytes for one train step at this batch size (compiled, not run).
  step: the jitted train step; example: example_spec(dataset), or an input shape."""
  x, y = (jax.ShapeDtypeStruct(*a) for a in _spec(example, batch_size))
  compiled = step.lower(state, x, y).compile()
  return timing.memory(compiled).get("xla_total_bytes")


def runs(step, state, example, batch_size):
  """Whether the step runs once at this batch size (False on out-of-memory)."""
  try:
    x, y = (jnp.zeros(*a) for a in _spec(example, batch_size))
    jax.block_until_ready(step(state, x, y))
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


def largest_batch(fits, start=1, limit=1 << 24, guess=None, resolution=0.0):
  """(largest b in [1, limit] with fits(b), {b: fits(b)} for every b tried); 0 if none fits.
  resolution: stop once the smallest batch seen not to fit is at most b * (1 + resolution)
  (0: exactly b + 1). For a fits() true up to one batch and false above it, the answer is
  that batch at resolution 0.

  guess(a, b), when given, predicts the boundary from what fits saw at two batch sizes
  (affine_guess: planned bytes are nearly affine in the batch), so the search jumps to
  it instead of doubling and bisecting: 3-4 compiles instead of about 35 for a batch of
  100,000s. A guess that does not halve the bracket is followed by a bisection step, so
  the answer stays exact and the worst case within twice bisection's tries.
  """
  tried = {}

  def check(b):
    if b not in tried:
      tried[b] = bool(fits(b))
    return tried[b]

  prev, lo, hi = 0, 0, start
  while hi <= limit and check(hi):  # grow until a batch does not fit
    nxt = hi * 2
    predicted = guess(prev, hi) if guess and prev else None
    if predicted is not None and predicted + 1 > nxt:
      nxt = predicted + 1  # just past the predicted boundary
    prev, lo, hi = hi, hi, nxt
  if hi > limit:
    hi = limit + 1
    if check(limit):
      return limit, tried
  bisect = guess is None
  while hi - lo > max(1, resolution * lo):  # lo fits (or is 0), hi does not
    mid = (lo + hi) // 2
    predicted = None if bisect or not lo else guess(lo, hi)
    if predicted is not None:
      mid = min(max(predicted, lo + 1), hi - 1)
    width = hi - lo
    lo, hi = (mid, hi) if check(mid) else (lo, mid)
    bisect = guess is None or (predicted is not None and hi - lo > width // 2)
  return lo, tried


def affine_guess(sizes, budget):
  """guess(a, b) for largest_batch: where the line through (a, sizes[a]) and (b, sizes[b])
  crosses the budget (the largest batch on or under it); None without both sizes."""
  def guess(a, b):
    sa, sb = sizes.get(a), sizes.get(b)
    if sa is None or sb is None or sb <= sa:
      return None
    return a + int((budget - sa) * (b - a) // (sb - sa))
  return guess


def search(engine, example, memory_budget=0):
  """The largest batch whose train step fits on the engine's first device: XLA's plan
  within the budget (memory_budget bytes; 0: budget_bytes' default) and, off the CPU,
  one real step. Returns the record fields."""
  # The one-block program's plan: a CPU program too large for one block runs with the same
  # buffers packed into heaps (jbatch/cpu_memory.py), which the plan need not compile.
  device, step, state = engine.device, jax.jit(engine.train_step), engine.state
  budget = budget_bytes(device, memory_budget)
  on_cpu = device.platform == "cpu"
  planned = {}

  def fits(b):
    planned[b] = planned_bytes(step, state, example, b)
    if planned[b] is None or planned[b] > budget:
      return False
    return on_cpu or runs(step, state, example, b)

  best, tried = largest_batch(fits, guess=affine_guess(planned, budget), resolution=RESOLUTION)
  over = min((b for b, ok in tried.items() if not ok and b > best), default=None)
  return {"max_batch": best, "memory_budget_bytes": budget,
          "planned_bytes_at_max": planned.get(best),
          "smallest_batch_over": over, "planned_bytes_over": planned.get(over),
          "search_resolution": RESOLUTION, "batches_tried": len(tried),
          "method": "XLA planned bytes" + ("" if on_cpu else " + one real step"),
          "device_name": device.device_kind, "n_devices": 1}
