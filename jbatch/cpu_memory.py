"""On a CPU, every call's temporaries come from a heap that is reused, not from fresh pages.

XLA's CPU client mallocs a compiled program's temporaries at every call and frees them
at its end. It packs them into one block (71 MB for a train step of 20,000 rows of the
S4 MLP, 173 MB for its full-batch epoch), and glibc serves a block over its mmap
threshold (32 MiB at most) with fresh pages from the kernel, so every call page-faulted
all of it: 10,000-48,000 faults per epoch call from batch 10,000 up, 0.2 us to 1 us each.
An epoch of one or two steps paid them on every step (the 20,000-example set at batch
10,000 took 2.9x PyTorch eager's time; BENCHMARKS.md, "Per-call temporaries"). So on
a CPU:

- glibc never maps a block of its own (mmap max 0), keeps what is freed and pads each
  heap's growth (mallopt; keep_freed_memory): a block comes from a heap at every call.
  The calls run on XLA's worker threads, whose arenas' heaps hold at most 64 MiB;
- so a program whose temporaries are over SINGLE_BLOCK_BYTES is compiled again with
  them packed into heaps of at most HEAP_BYTES (XLA's
  xla_multiheap_size_constraint_per_heap; jit below). Only those: JAX's persistent
  compilation cache cannot store a program of several heaps ("Multiple temp buffer
  allocations found"), so a large program compiles again in every run, where a small
  one loads from the cache.

A single array over 64 MiB still gets fresh pages each call (no heap holds it): the MLP
keeps its whole-batch activations in pieces under HEAP_BYTES for that reason
(models/mlp.py).
"""

import contextlib
import ctypes
import functools
import warnings

import jax

HEAP_BYTES = 48_000_000
SPLIT_OPTIONS = {"xla_multiheap_size_constraint_per_heap": HEAP_BYTES}
# The most temporaries one block of a thread arena's 64 MiB heap holds, with room for
# what else the thread has allocated there.
SINGLE_BLOCK_BYTES = 56 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024  # a thread arena's heap size: see keep_freed_memory
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def jit(fn, platform, split=True, **kwargs):
  """jax.jit(fn, **kwargs) for a program run on this platform's devices; on a CPU, one
  whose compiled temporaries are over SINGLE_BLOCK_BYTES is compiled split into heaps
  (split=False: never)."""
  if platform != "cpu":
    return jax.jit(fn, **kwargs)
  keep_freed_memory()
  return CpuJit(fn, **kwargs) if split else jax.jit(fn, **kwargs)


class CpuJit:
  """jax.jit(fn) whose compile (`.lower(...).compile()`, or the first call) compiles it
  again with SPLIT_OPTIONS when its temporaries would not fit one heap of a thread arena.
  The first call decides for every later one: a program's later calls have its first
  call's shapes, or a short last batch's smaller ones."""

  def __init__(self, fn, **kwargs):
    functools.update_wrapper(self, fn)
    self._kwargs = kwargs
    self._plain = jax.jit(fn, **kwargs)
    self._chosen = None

  def lower(self, *args, **kwargs):
    return _Lowered(self._plain.lower(*args, **kwargs))

  def __call__(self, *args, **kwargs):
    if self._chosen is not None:
      return self._chosen(*args, **kwargs)
    # The plain compile is jit's own: a call then reuses it.
    if not needs_split(self._plain.lower(*args, **kwargs).compile()):
      self._chosen = self._plain
      return self._chosen(*args, **kwargs)
    self._chosen = jax.jit(self.__wrapped__, compiler_options=SPLIT_OPTIONS, **self._kwargs)
    with _not_storable():  # its first call compiles it
      return self._chosen(*args, **kwargs)


class _Lowered:
  """A jax Lowered whose compile() follows CpuJit's rule."""

  def __init__(self, lowered):
    self._lowered = lowered

  def compile(self):
    compiled = self._lowered.compile()
    if not needs_split(compiled):
      return compiled
    with _not_storable():
      return self._lowered.compile(compiler_options=SPLIT_OPTIONS)

  def __getattr__(self, name):
    return getattr(self._lowered, name)


@contextlib.contextmanager
def _not_storable():
  """JAX's warning that the cache could not write a split program: known, and said once in
  the README rather than at every large program."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Error writing persistent compilation cache entry")
    yield


def needs_split(compiled):
  analysis = compiled.memory_analysis()
  return analysis is not None and analysis.temp_size_in_bytes > SINGLE_BLOCK_BYTES


@functools.cache
def keep_freed_memory():
  """glibc only (elsewhere nothing is changed): True when every setting took. Process-wide,
  so PyTorch in the same process (the throughput study's twin) gets the same heap.

  XLA's worker threads allocate from glibc's thread arenas, whose heaps are 64 MiB at
  most; a call needing more spreads over several, and glibc unmaps a trailing heap as soon
  as it is wholly free, whatever the trim threshold, unless the heap before it has less
  than the top pad to spare. A top pad of a whole heap keeps every heap (and pads each
  growth of the heap with untouched address space, which costs no memory). With mmap
  max 0 a thread arena still maps a block larger than its heap (glibc falls back to it),
  and the main arena grows its heap instead: PyTorch's tensors over 32 MiB (a
  full-batch activation) are reused too."""
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  return bool(mallopt(_M_MMAP_MAX, 0)
              and mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
              and mallopt(_M_TOP_PAD, TOP_PAD))
