"""The learning-rate trials of one batch size, each trained until a target or its length.

A trial is a learning rate (and, optionally, a momentum) and a seed. All
trials of a batch size share one engine whose optimizer keeps its learning
rate and momentum in its state (optim.make(..., inject=True)), so the
compiled segments are the same program for every trial: compiled once.
They run one after another through fit (probes possible), or side by side as
one vmapped program (`vmapped`): a small model leaves a device mostly idle,
and a stack of trials fills it.
"""

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from jbatch.train import fit as fit_lib, loop, parallel, point as point_lib
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Trial:
  lr: float
  momentum: float | None  # None: the optimizer's own (or it has none)
  seed: int

  def hyperparams(self):
    return {"learning_rate": self.lr,
            **({"momentum": self.momentum} if self.momentum is not None else {})}


def _radical_inverse(i, base):
  """The i-th point of the van der Corput sequence in `base` (Halton's coordinates)."""
  out, f = 0.0, 1.0 / base
  while i:
    i, digit = divmod(i, base)
    out += digit * f
    f /= base
  return out


def search_space(lr_range, count, method="log", momentum_range=None):
  """[(lr, momentum or None)]: `count` learning rates log-spaced over lr_range, or
  quasi-random (Halton: base 2 for log LR, base 3 for log(1 - momentum)) when method is
  'quasi'; momentum is searched only when momentum_range is given."""
  lo, hi = (math.log(v) for v in lr_range)
  if method == "log" and momentum_range is None:
    return [(float(v), None) for v in np.exp(np.linspace(lo, hi, count))] if count > 1 else [
        (float(math.exp((lo + hi) / 2)), None)]
  out = []
  for i in range(1, count + 1):
    lr = math.exp(lo + (hi - lo) * _radical_inverse(i, 2))
    m = None
    if momentum_range is not None:
      a, b = (math.log(1 - v) for v in momentum_range)
      m = 1 - math.exp(a + (b - a) * _radical_inverse(i, 3))
    out.append((float(lr), m))
  return sorted(out)


def initial_weights(point, seed):
  """(params, model_state) of the point's model as seeded by `seed`."""
  model = point_lib.build_model(point.config, point.workload, seed, point.platform)
  _, params, model_state = nnx.split(model, nnx.Param, ...)
  return params, model_state


def summarize(trial, result, plan):
  """A trial's row in the record, from fit's result."""
  t, last = result.get("target") or {}, (result["history"] or [{}])[-1]
  steps_run = last.get("steps", 0)
  return {"lr": trial.lr, "momentum": trial.momentum, "seed": trial.seed,
          "status": result["status"], "reached": bool(t.get("reached")),
          "steps": t.get("steps"), "examples": t.get("examples"), "seconds": t.get("seconds"),
          "best": t.get("best"), "steps_run": steps_run,
          "examples_run": int(plan.examples_at(steps_run)),
          "train_seconds": result["train_seconds"],
          "s_per_step": result["train_seconds"] / steps_run if steps_run else None,
          "compile_s": result["compile_s"]}


def run_sequential(point, trials, target, probe=None, probe_batch=None, on_probes=None):
  """Each trial through fit on the point's engine. Returns [(trial row, fit result)]."""
  out = []
  for trial in trials:
    params, model_state = initial_weights(point, trial.seed)
    point.engine.start_from(params, model_state, trial.hyperparams())
    extra = {}
    if probe is not None:
      init = jax.tree.map(jnp.copy, point.engine.state.params)  # the state is donated
      extra = dict(probe=probe, probe_args=(init, *probe_batch),
                   on_probes=on_probes)
    splits = (target.split,) if target else ("validation",)
    result = point_lib.train(point, seed=trial.seed, target=target or False, splits=splits,
                             label=f"b{point.plan.batch_size} lr {trial.lr:.3g}", **extra)
    row = summarize(trial, result, point.plan)
    # the test set: reported, never tuned on
    row.update({f"test_{k}": v for k, v in point_lib.evaluate(point, "test").items()})
    out.append((row, result))
  return out


def run_vmapped(point, trials, target, eval_batch_size):
  """All trials as one program: a stacked state stepped by a vmapped segment, a vmapped
  evaluation at every evaluation point, each trial's first crossing of the target kept;
  stops when every trial has reached it or diverged. Returns [(trial row, result)]."""
  engine, plan = point.engine, point.plan
  x, y = point.train_arrays()
  split = target.split if target is not None else "validation"
  evals = point_lib.evaluation_sets(point, (split, "test"))
  states = [engine.initial_state(*initial_weights(point, t.seed), t.hyperparams())
            for t in trials]
  states = engine.put(jax.tree.map(lambda *a: jnp.stack(a), *states))[0]
  seeds = jnp.asarray([t.seed for t in trials])
  # compiled once: an eager vmap traces again at every segment (3 ms each, which a run
  # evaluated every step pays thousands of times)
  keys_of = jax.jit(jax.vmap(loop.epoch_key, in_axes=(0, None)))
  keys = lambda e: keys_of(seeds, e)
  # the evaluator's own function (__wrapped__): a jit inside this one may not carry
  # compiler options, and this one carries the engine's
  evaluate = {name: engine.jit(jax.vmap(engine.evaluator(ex.shape[0], eval_batch_size).__wrapped__,
                                        in_axes=(0, None, None)))
              for name, (ex, _) in evals.items()}
  n = len(trials)
  histories, hits, dead, tests = [[] for _ in trials], [None] * n, [False] * n, [None] * n
  means = lambda m, i: {k: float(v[i]) / max(int(m["count"][i]), 1) for k, v in m.items()
                        if k != "count"}
  compile_s, train_s = 0.0, 0.0
  for seg in plan.segments():
    start = () if seg.steps == plan.steps_per_epoch else (seg.start,)
    fn, seconds = engine.compiled_epoch(plan, seg, (states, x, y, keys(0), *start), trials=True)
    compile_s += seconds
    t0 = time.perf_counter()
    states, metrics = fn(states, x, y, keys(seg.epoch), *start)
    metrics = parallel.to_host(metrics)
    train_s += time.perf_counter() - t0
    done = seg.epoch * plan.steps_per_epoch + seg.start + seg.steps
    measured = {split: parallel.to_host(evaluate[split]((states.params, states.model_state),
                                                      *evals[split]))}
    for i in range(n):
      if hits[i] is not None or dead[i]:
        continue
      row = {"epoch": plan.epoch_at(done), "steps": done,
             "examples": int(plan.examples_at(done)), "train_seconds": train_s,
             **{f"train_{k}_running": v for k, v in means(metrics, i).items()}}
      for name, m in measured.items():
        row.update({f"{name}_{k}": v for k, v in means(m, i).items()})
      histories[i].append(row)
      dead[i] = not math.isfinite(row["train_loss_running"])
      if target is not None and target.met(row):
        hits[i] = row
    # The test set at the point each trial stops, as a run of its own would stop there.
    ended = [i for i in range(n) if tests[i] is None and (hits[i] is not None or dead[i]
                                                          or done == plan.total_steps)]
    if ended:
      test = parallel.to_host(evaluate["test"]((states.params, states.model_state),
                                             *evals["test"]))
      for i in ended:
        tests[i] = {f"test_{k}": v for k, v in means(test, i).items()}
    if all(a is not None for a in tests):
      break
  out = []
  for i, trial in enumerate(trials):
    h = histories[i]
    status = "diverged" if dead[i] else (
        "ok" if hits[i] is not None or target is None else "not_reached")
    # one shared program: its compile counted once, its seconds shared by all
    result = {"status": status, "history": h, "compile_s": compile_s if i == 0 else 0.0,
              "train_seconds": train_s}
    if target is not None:
      result["target"] = fit_lib.target_fields(target, hits[i], h)
    row = summarize(trial, result, plan)
    row.update(tests[i])
    out.append((row, result))
  return out
