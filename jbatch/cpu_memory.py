"""On a CPU, every call's temporaries come from a heap that is reused, not from fresh pages.

XLA's CPU client mallocs a compiled program's temporaries at every call and frees them
at its end. It packs them into one block (71 MB for a train step of 20,000 rows of the
S4 MLP, 197 MB for its full-batch epoch), and glibc serves a block over its mmap
threshold (32 MiB at most) with fresh pages from the kernel, so every call page-faulted
all of it: 10,000-48,000 faults per epoch call from batch 10,000 up, 0.2 us to 1 us each.
An epoch of one or two steps paid them on every step (the 20,000-example set at batch
10,000 took 2.9x PyTorch eager's time; BENCHMARKS.md, "Per-call temporaries"). So on
a CPU:

- each program packs its temporaries into heaps of at most HEAP_BYTES (XLA's
  xla_multiheap_size_constraint_per_heap, passed per compiled program so that a GPU's
  programs, in the same process, keep their one block from the device's allocator);
- glibc's mmap threshold is held at its maximum and freed memory is kept, in the main
  arena and in the threads' (mallopt; keep_freed_memory), so that blocks under 32 MiB
  come from the heap at every call, not only once glibc's dynamic threshold has happened
  to grow past them.

A single array over 32 MiB still gets fresh pages each call: the MLP keeps its
whole-batch activations in pieces under HEAP_BYTES for that reason (models/mlp.py).
"""

import ctypes
import functools

HEAP_BYTES = 16_000_000
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (half its 64 MiB arena heap)
TOP_PAD = 64 * 1024 * 1024  # a thread arena's heap size: see keep_freed_memory
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def compiler_options(platform):
  """XLA compiler options for the programs of an engine on this platform (None: defaults)."""
  if platform != "cpu":
    return None
  keep_freed_memory()
  return {"xla_multiheap_size_constraint_per_heap": HEAP_BYTES}


@functools.cache
def keep_freed_memory():
  """glibc only (elsewhere nothing is changed): True when every setting took. Process-wide,
  so PyTorch in the same process (the throughput study's twin) gets the same heap.

  XLA's worker threads allocate from glibc's thread arenas, whose heaps are 64 MiB at
  most; a call needing more spreads over several, and glibc unmaps a trailing heap as soon
  as it is wholly free, whatever the trim threshold, unless the heap before it has less
  than the top pad to spare. A top pad of a whole heap keeps every heap (and pads each
  growth of the heap with untouched address space, which costs no memory)."""
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
              and mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
              and mallopt(_M_TOP_PAD, TOP_PAD))
