"""`jbatch --workers=N`: N local jbatch processes share one sweep, each pinned to its own cores.

A small-batch point is bound by one core (XLA runs its small matrix products
one after another on one thread), so one process leaves the other cores idle;
N workers claim the grid's points between them (results/claims.py). Each is
pinned with sched_setaffinity, and XLA's and PyTorch's thread pools are sized
to its share of the cores.
"""

import os
import signal
import subprocess
import sys

from jbatch.errors import UserError


def check(workers):
  """The worker count to start: UserError below 1, a warning and the core count above it."""
  if workers < 1:
    raise UserError(f"--workers={workers}; give 1 or more local workers")
  cores = len(os.sched_getaffinity(0))
  if workers > cores:
    print(f"[jbatch] warning: --workers={workers} but this process may use {cores} cores; "
          f"starting {cores}", file=sys.stderr)
    return cores
  return workers


def core_groups(cores, workers):
  """cores split into `workers` contiguous groups, sizes differing by one at most."""
  cores = sorted(cores)
  size, extra = divmod(len(cores), workers)
  groups, start = [], 0
  for i in range(workers):
    end = start + size + (i < extra)
    groups.append(cores[start:end])
    start = end
  return groups


def child_env(index, cores):
  threads = str(len(cores))
  # XLA sizes its CPU thread pool by the cores the process may use (the affinity), so it
  # needs no flag (one would also change the compile cache's keys).
  return dict(os.environ, JBATCH_WORKER=str(index), OMP_NUM_THREADS=threads,
              MKL_NUM_THREADS=threads)


def launch(workers, argv):
  """Runs argv (jbatch's own arguments, without --workers) in `workers` pinned children;
  returns the exit status (the worst of theirs)."""
  children = []
  for index, cores in enumerate(core_groups(os.sched_getaffinity(0), workers)):
    children.append(subprocess.Popen(
        [sys.executable, "-m", "jbatch", *argv], env=child_env(index, cores),
        preexec_fn=lambda cores=cores: os.sched_setaffinity(0, cores)))
  print(f"[jbatch] {workers} workers started (pids {', '.join(str(c.pid) for c in children)})",
        file=sys.stderr, flush=True)

  def forward(signum, _frame):
    for child in children:
      if child.poll() is None:
        child.send_signal(signum)
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, forward)
  codes = [child.wait() for child in children]
  return max(codes, key=abs)


def without_workers_flag(argv):
  out, skip = [], False
  for arg in argv:
    if skip:
      skip = False
      continue
    if arg == "--workers":
      skip = True
      continue
    if not arg.startswith("--workers="):
      out.append(arg)
  return out
