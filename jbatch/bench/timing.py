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


def step_flops(fn, *args):
  """XLA's FLOP count of fn(*args) over the whole (global) batch, from the program before
  it is partitioned over devices, its convolutions counted unchunked (XLA counts a loop
  body once). Traced afresh, since a cached trace may hold the chunked form; args may
  be arrays, donated ones included, or shapes."""
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
  with conv.unchunked():
    return cost(jax.jit(lambda *a: fn(*a)).lower(*shapes))["flops"]


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

