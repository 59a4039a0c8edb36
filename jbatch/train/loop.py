"""Epochs: fused into one compiled call, or driven step by step from Python.

The fused epoch draws the permutation on the device, gathers each batch from
the device-resident dataset and runs every step inside one lax.scan: one
dispatch and one host sync per epoch. The host loop runs the same steps on
the same permutation with one dispatch per step; it exists to measure what
that per-step overhead costs (seeds/004's GPU-slower-than-CPU effect), and the
two reach the same parameters (tested).
"""

import functools
import time

import jax
import jax.numpy as jnp
from jax import lax

from jbatch.bench import timing
from jbatch.data import shuffle
from jbatch.train import parallel
from jbatch.train.step import add_metrics, zero_metrics

# A step below this many FLOPs takes a few hundred microseconds on a CPU, and the
# scan's per-iteration cost shows: running UNROLL steps per loop iteration made the
# S4 MLP at batch 100 11% faster (unroll 2: 7%, 8: 4%; scripts/bench_throughput.py).
# Larger steps gain nothing and would compile UNROLL times more code.
SMALL_STEP_FLOPS = 50e6
UNROLL = 4


def epoch_key(seed, epoch):
  return jax.random.fold_in(jax.random.key(seed), epoch)


def _gather(x, y, idx, batch_sharding):
  xb, yb = x[idx], y[idx]
  if batch_sharding is not None:
    xb = lax.with_sharding_constraint(xb, batch_sharding)
    yb = lax.with_sharding_constraint(yb, batch_sharding)
  return xb, yb


def make_fused_epoch(train_step, plan, batch_sharding=None, probe=None, segment=None,
                     trials=False, jit=jax.jit):
  """jit(state, x, y, key) -> (state, summed metrics) over one epoch of `plan`; state is
  donated.

  segment, when given (plan.Segment), runs only that piece of an epoch: the
  function then takes one more argument after the key, the segment's first
  step in its epoch, so that every segment of one length shares one compile.
  probe, when given (probes/schedule.py), runs after every step where
  probe.due(step) holds, inside a lax.cond so that other steps pay nothing; the
  function then takes one more argument, the probe's arrays, and
  metrics["probes"] holds {"due": (steps,), "values": stacked}.
  trials: state and key carry a leading axis of independent runs (one per LR and
  seed of a search, train/trials.py), all stepped by one program; no probe then.
  jit: what compiles it (jax.jit, or an engine's: jbatch/cpu_memory.py).
  """
  b, n = plan.batch_size, plan.num_train
  if segment is None or segment.steps == plan.steps_per_epoch:
    full, tail, sliced = plan.full_steps, plan.tail, False
  else:
    full, tail, sliced = segment.steps - segment.with_tail, plan.tail * segment.with_tail, True

  def step(state, xb, yb, probe_args, tail=False):
    new_state, metrics = train_step(state, xb, yb)
    if probe is None:
      return new_state, metrics
    run = lambda: probe(state, new_state, xb, yb, probe_args)
    if tail and not probe.probes_tail:
      # A probe of the current batch never sees the short last one (too few examples to
      # split into its groups or chunks, or one alone): zeros shaped as a full batch's.
      batch = [jax.ShapeDtypeStruct((b, *a.shape[1:]), a.dtype) for a in (xb, yb)]
      shapes = jax.eval_shape(lambda xf, yf: probe(state, new_state, xf, yf, probe_args), *batch)
      return new_state, (metrics, {"due": jnp.bool_(False),
                                   "values": jax.tree.map(jnp.zeros_like, shapes)})
    due = probe.due(state.step)
    skip = lambda: jax.tree.map(jnp.zeros_like, jax.eval_shape(run))
    return new_state, (metrics, {"due": due, "values": lax.cond(due, run, skip)})

  def run(state, x, y, key, start, probe_args):
    if sliced:  # this segment's batches alone, at a traced start: one compile per length
      perm = shuffle.permutation(key, n, start * b, full * b + tail)
    else:
      perm = shuffle.permutation(key, n)

    def body(state, idx):
      return step(state, *_gather(x, y, idx, batch_sharding), probe_args)

    unroll = steps_per_iteration(train_step, state, x[:b], y[:b])
    state, per_step = lax.scan(body, state, perm[:full * b].reshape(full, b), unroll=unroll)
    if tail:
      state, last = step(state, *_gather(x, y, perm[full * b:full * b + tail], batch_sharding),
                         probe_args, tail=True)
      per_step = jax.tree.map(lambda a, c: jnp.concatenate([a, c[None]]), per_step, last)
    if probe is None:
      return state, jax.tree.map(lambda m: m.sum(0), per_step)
    metrics, probes = per_step
    return state, {**jax.tree.map(lambda m: m.sum(0), metrics), "probes": probes}

  if sliced:
    epoch = lambda state, x, y, key, start, probe_args=None: run(state, x, y, key, start,
                                                                 probe_args)
  else:
    epoch = lambda state, x, y, key, probe_args=None: run(state, x, y, key, 0, probe_args)
  if trials:
    epoch = jax.vmap(epoch, in_axes=(0, None, None, 0) + ((None,) if sliced else ()))
  return jit(epoch, donate_argnums=0)


def steps_per_iteration(train_step, state, xb, yb):
  """UNROLL for a step under SMALL_STEP_FLOPS, else 1. Every parameter costs at least
  6 FLOPs per example (forward, two backward products), so only steps that may be
  small are lowered for XLA's count."""
  n_params = sum(a.size for a in jax.tree.leaves(state.params))
  if 6 * n_params * xb.shape[0] >= SMALL_STEP_FLOPS:
    return 1
  flops = timing.step_flops(train_step, state, xb, yb)
  return UNROLL if flops is not None and flops < SMALL_STEP_FLOPS else 1


class HostLoop:
  """The same epoch as make_fused_epoch, one Python dispatch per step."""

  def __init__(self, train_step, plan, batch_sharding=None, jit=jax.jit):
    self.train_step, self.zeros = train_step, None  # zeros: the metrics' start, once known
    self.full, self.tail = plan.full_steps, plan.tail
    batch_size, num_train = plan.batch_size, plan.num_train
    # Steps with an all-reduce queued ahead on CPU devices deadlock XLA's in-process
    # rendezvous (some devices' threads start the next step while the others still wait
    # in this one's): on several devices each step completes before the next is sent.
    self.mesh = batch_sharding.mesh if batch_sharding is not None else None
    n_devices = self.mesh.devices.size if self.mesh is not None else 1
    self.sync = n_devices > 1 and self.mesh.devices.flat[0].platform == "cpu"
    self.permute = jit(functools.partial(shuffle.permutation, n=num_train))

    # Metrics are summed inside the compiled step: an eager add per step would
    # charge the host loop for dispatches that are not part of training.
    def step(state, total, x, y, perm, i):
      idx = lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
      state, m = train_step(state, *_gather(x, y, idx, batch_sharding))
      return state, add_metrics(total, m)

    def tail_step(state, total, x, y, perm):
      idx = perm[self.full * batch_size:self.full * batch_size + self.tail]
      state, m = train_step(state, *_gather(x, y, idx, batch_sharding))
      return state, add_metrics(total, m)

    self.step = jit(step, donate_argnums=0)
    self.tail_step = jit(tail_step, donate_argnums=0)

  def compile(self, state, x, y):
    """Compiles the step (and the short last step) ahead of time; returns seconds."""
    t0 = time.perf_counter()
    key = jax.random.key(0)
    if self.mesh is not None:  # placed as the epochs' keys are, or the compiled step would
      key = parallel.replicate(key, self.mesh)  # expect another layout
    perm = self.permute(key)
    self.zeros = self._zeros(state, x, y)
    self.step = self.step.lower(state, self.zeros, x, y, perm, 0).compile()
    if self.tail:
      self.tail_step = self.tail_step.lower(state, self.zeros, x, y, perm).compile()
    return time.perf_counter() - t0

  def _zeros(self, state, x, y):
    return zero_metrics(jax.eval_shape(self.train_step, state, x[:1], y[:1])[1])

  def __call__(self, state, x, y, key):
    perm = self.permute(key)
    if self.zeros is None:
      self.zeros = self._zeros(state, x, y)
    metrics = self.zeros
    for i in range(self.full):
      state, metrics = self.step(state, metrics, x, y, perm, i)
      if self.sync:
        jax.block_until_ready(metrics)
    if self.tail:
      state, metrics = self.tail_step(state, metrics, x, y, perm)
    return state, metrics


def make_evaluate(eval_step, num_examples, batch_size, jit=jax.jit):
  """jit(weights, x, y) -> summed metrics over the whole set, in fixed-size chunks."""
  batch_size = min(batch_size, num_examples)
  full, tail = divmod(num_examples, batch_size)

  def evaluate(weights, x, y):
    def body(total, i):
      xb = lax.dynamic_slice_in_dim(x, i * batch_size, batch_size)
      yb = lax.dynamic_slice_in_dim(y, i * batch_size, batch_size)
      return add_metrics(total, eval_step(weights, xb, yb)), None

    first = eval_step(weights, x[:batch_size], y[:batch_size])
    total, _ = lax.scan(body, first, jnp.arange(1, full))
    if tail:
      total = add_metrics(total, eval_step(weights, x[full * batch_size:], y[full * batch_size:]))
    return total

  return jit(evaluate)


def summarize(metrics):
  """Host-side means from summed metrics (the one sync per epoch): loss and each
  workload metric per example."""
  m = parallel.to_host(metrics)
  count = max(int(m["count"]), 1)
  return {k: float(v) / count for k, v in m.items() if k != "count"}
