"""Honest timing: compile apart from steady state, warm-up, medians and spread.

FLOPs and bytes come from XLA's own cost and memory analyses of the compiled
program, not from hand counts.
"""

import time

import jax
import numpy as np

from jbatch.models import conv

# Dense float32 peak per device, FLOP/s, for the fraction-of-peak column.
# CPUs vary too much to list: give config.peak_flops for them.
PEAK_FLOPS_F32 = {"H100": 67e12, "H200": 67e12, "A100": 19.5e12, "L4": 30.3e12,
                  "V100": 15.7e12, "T4": 8.1e12}


def compile_timed(jitted, *args):
  """(compiled executable, seconds to lower and compile)."""
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


def timed(fn):
  """Seconds for fn(), its result made ready first."""
  t0 = time.perf_counter()
  out = fn()
  jax.block_until_ready(out)
  return out, time.perf_counter() - t0


def median_seconds(fn, repeats, warmup=0):
  """Median wall seconds of fn() over `repeats` calls, each made ready, after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  return float(np.median([timed(fn)[1] for _ in range(repeats)]))


def spread(seconds):
  s = np.asarray(seconds, float)
  return {"median": float(np.median(s)), "min": float(s.min()), "max": float(s.max()),
          "iqr": float(np.subtract(*np.percentile(s, [75, 25]))), "repeats": len(s)}


def cost(compiled):
  """flops and bytes accessed of one call, from XLA's cost analysis (None if absent)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return {"flops": None, "bytes_accessed": None}
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  return {"flops": analysis.get("flops"), "bytes_accessed": analysis.get("bytes accessed")}


def step_cost(fn, *args, compiled=False):
  """XLA's flops and bytes accessed of fn(*args) over the whole (global) batch, its
  chunked layers counted unchunked (XLA counts a loop body once): from the program before
  it is partitioned over devices, or with compiled=True from the optimized one, whose
  bytes are those of its fused kernels (the lowered program counts every operation's
  operands). Traced afresh, since a cached trace may hold the chunked form; args may be
  arrays, donated ones included, or shapes."""
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
  with conv.unchunked():
    lowered = jax.jit(lambda *a: fn(*a)).lower(*shapes)
    return cost(lowered.compile() if compiled else lowered)


def step_flops(fn, *args):
  return step_cost(fn, *args)["flops"]


def practical_peaks(device, rounds=3):
  """(FLOP/s, bytes/s, rates): the best this device reaches in a large float32 matrix
  product and in a large array scaled in place (read once, written once; donated, so
  that no call writes to fresh pages: on a CPU their page faults, not the memory, would
  set the rate), and every timed call's rates, {"flops": [...], "bytes": [...]}. The
  roofline a step is held to (scripts/bench_throughput.py).

  The best of many calls in several rounds, each round with a fresh array and the two
  measurements alternating: on the 2-core VMs of this project the copy runs at about
  64 GB/s or about 115 GB/s (numpy's copy on one or two threads: a steady 64), switching
  between the two within a run or holding one for a whole run. The best of 5 calls gave
  either, and flipped the bound of a step from one run to the next; more calls make the
  high one likelier to be seen, not certain, so the benchmark prints both fractions."""
  side = 2048 if device.platform == "cpu" else 8192
  copy_floats = 2 ** 28  # 1 GiB: past any CPU's last-level cache
  a = jax.device_put(np.ones((side, side), np.float32), device)
  matmul = jax.jit(lambda a: a @ a)
  scale = jax.jit(lambda x: x * 0.5, donate_argnums=0)
  rates = {"flops": [], "bytes": []}
  for _ in range(rounds):
    x = [jax.device_put(np.ones(copy_floats, np.float32), device)]

    def scale_in_place():
      x[0] = scale(x[0])
      return x[0]

    for _ in range(5):
      rates["flops"].append(2 * side ** 3 / median_seconds(lambda: matmul(a), 1, warmup=1))
      rates["bytes"].append(2 * 4 * copy_floats / median_seconds(scale_in_place, 1, warmup=1))
    del x
  return max(rates["flops"]), max(rates["bytes"]), rates


def memory(compiled):
  """Bytes XLA plans for one call: arguments, outputs and temporaries."""
  try:
    m = compiled.memory_analysis()
  except Exception:
    return {}
  if m is None:
    return {}
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return {"xla_temp_bytes": int(m.temp_size_in_bytes),
          "xla_argument_bytes": int(m.argument_size_in_bytes),
          "xla_total_bytes": int(total)}


def device_peak_bytes(device):
  """The allocator's high-water mark where the backend reports one (GPU, TPU)."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def peak_flops(device, configured=0.0):
  if configured:
    return float(configured)
  for name, flops in PEAK_FLOPS_F32.items():
    if name in device.device_kind:
      return flops
  return None

