"""Training to a result: fused segments between evaluation points, a compiled evaluation at
each, an optional target that stops the run, checkpoints, divergence, progress.

The plan (train/plan.py) cuts the run at its evaluation points: every epoch
end, plus every `eval_every` steps or examples. With no evaluation inside an
epoch each epoch is one compiled call, as before; otherwise each segment is one
call (one compile per segment length). The host syncs once per segment (the
summed metrics) plus the evaluations. A NaN or infinite training loss stops the
run with status `diverged`; a target met stops it with its steps, examples and
seconds; a target never met ends the run at its length with status
`not_reached` (one with stop=False, only recorded, leaves it `ok`).
"""

import dataclasses
import math
import time


from jbatch.bench import timing
from jbatch.errors import UserError
from jbatch.results.sweep import progress
from jbatch.train import loop, parallel

CLASSIFIER_METRICS = ("loss", "acc", "error")  # an engine's default workload reports these


@dataclasses.dataclass(frozen=True)
class Target:
  """Stop when evaluation set `split` has metric >= value (direction 'max': accuracy and the
  workload's higher_is_better metrics) or <= value ('min': loss, error, the others)."""
  metric: str
  value: float
  split: str = "test"
  direction: str | None = None  # None: max for acc, min for the others
  stop: bool = True  # False: the run goes on after the target is met

  def __post_init__(self):
    if self.direction is None:
      object.__setattr__(self, "direction", "max" if self.metric == "acc" else "min")

  def measured(self, row):
    """This target's metric in a history row (None where the row has no evaluation)."""
    if self.metric == "error":
      acc = row.get(f"{self.split}_acc")
      return None if acc is None else 1.0 - acc
    return row.get(f"{self.split}_{self.metric}")

  def met(self, row):
    v = self.measured(row)
    return v is not None and (v >= self.value if self.direction == "max" else v <= self.value)


def check_target(cfg, splits, workload=None):
  """cfg: a config's target section {metric, value, split}; metric '' means no target.
  workload: whose metrics a target may name (None: a classifier's)."""
  if not cfg.metric:
    return None
  names = workload.metric_names() if workload is not None else CLASSIFIER_METRICS
  if cfg.metric not in names:
    whose = "" if workload is None else f" of workload {workload.source}" + (
        f" ({workload.name})" if workload.source == "builtin" else "")
    raise UserError(f"unknown target metric {cfg.metric!r}{whose}; choose one of "
                    f"{', '.join(names)}")
  if cfg.split not in splits:
    raise UserError(f"target.split={cfg.split!r}; choose one of {', '.join(splits)}")
  if cfg.metric in ("acc", "error") and not 0 < cfg.value < 1:
    raise UserError(f"target {cfg.metric}={cfg.value} is outside (0, 1); give a fraction, "
                    "e.g. --config.target.value=0.97")
  if cfg.metric == "loss" and cfg.value <= 0:
    raise UserError(f"target loss={cfg.value}; give a positive value")
  direction = (workload.direction(cfg.metric) if workload is not None and cfg.metric != "error"
               else None)
  return Target(cfg.metric, float(cfg.value), cfg.split, direction, bool(cfg.get("stop", True)))


def fit(engine, train, evals, plan, *, seed, eval_batch_size, checkpoints=None, lr_at=None,
        label="", meta=None, probe=None, probe_args=None, on_probes=None, target=None):
  """train: (x, y) on the mesh; evals: {name: (x, y)} on the mesh, evaluated at every
  evaluation point of `plan`.

  probe (probes/schedule.py) runs inside the fused segments with probe_args;
  on_probes(outputs of one segment on the host, steps before it) returns fields
  for that segment's history row, so that they are checkpointed with it.

  Returns {status, history, compile_s, train_seconds, resumed_from_epoch,
  diverged_epoch, target}. The history has one row per evaluation point: running
  train loss/acc over the steps since the last row, <name>_loss/<name>_acc per
  eval set, lr, epoch (a fraction between epoch ends), steps, examples, seconds.
  """
  x, y = train
  key = lambda e: engine.put(loop.epoch_key(seed, e))[0]
  history, done, train_s, finished, resumed_at = [], 0, 0.0, False, None
  if checkpoints is not None:
    restored = checkpoints.restore_latest(engine.state)
    if restored is not None:
      engine.state, saved = restored
      history, train_s = saved["history"], saved["train_seconds"]
      done = saved.get("steps_done", saved.get("epochs_done", 0) * plan.steps_per_epoch)
      finished, resumed_at = saved.get("finished", False), plan.epoch_at(done)
      progress(f"{label}: resumed from the checkpoint after epoch {plan.epoch_at(done)}")

  extra = () if probe is None else (probe_args,)
  compile_s = 0.0

  def segment_fn(seg):
    """The compiled call for a segment (compiled once per engine and segment shape)."""
    nonlocal compile_s
    start = () if seg.steps == plan.steps_per_epoch else (seg.start,)
    fn, seconds = engine.compiled_epoch(plan, seg, (engine.state, x, y, key(0), *start, *extra),
                                        probe)
    compile_s += seconds
    return lambda state, x, y, k, *rest: fn(state, x, y, k, *start, *rest)

  evaluators = {}
  if not finished:
    for name, (ex, ey) in evals.items():
      evaluators[name], seconds = timing.compile_timed(
          engine.evaluator(ex.shape[0], eval_batch_size), engine.weights(), ex, ey)
      compile_s += seconds

  status, diverged_epoch, t_loop, hit = "ok", None, time.perf_counter(), None
  if target is not None:
    hit = next((r for r in history if target.met(r)), None)
  todo = [] if finished else [s for s in plan.segments()
                              if s.epoch * plan.steps_per_epoch + s.start >= done]
  for i, seg in enumerate(todo):
    run = segment_fn(seg)
    t0 = time.perf_counter()
    engine.state, metrics = run(engine.state, x, y, key(seg.epoch), *extra)
    probes = metrics.pop("probes", None)
    summary = loop.summarize(metrics)  # blocks: the segment is done
    seg_s = time.perf_counter() - t0
    train_s += seg_s
    t0 = time.perf_counter()
    steps_before = seg.epoch * plan.steps_per_epoch + seg.start
    done = steps_before + seg.steps
    row = {"epoch": plan.epoch_at(done),
           **{f"train_{k}_running": v for k, v in summary.items()}}
    for name, evaluate in evaluators.items():
      result = loop.summarize(evaluate(engine.weights(), *evals[name]))
      row.update({f"{name}_{k}": v for k, v in result.items()})
    new_examples = plan.examples_at(done) - plan.examples_at(steps_before)
    row.update(steps=done, examples=int(plan.examples_at(done)), train_seconds=train_s,
               epoch_s=seg_s, eval_s=time.perf_counter() - t0,
               samples_per_sec=int(new_examples) / seg_s,
               lr=float(lr_at(done - 1)) if lr_at else None)
    if on_probes is not None:
      row.update(on_probes(parallel.to_host(probes), steps_before))
    history.append(row)
    if not math.isfinite(summary["loss"]):
      status, diverged_epoch = "diverged", math.ceil(plan.epoch_at(done))
      progress(f"{label} epoch {plan.epoch_at(done)}/{plan.epochs}: training loss is "
               f"{summary['loss']}; diverged, stopping this run")
      break
    newly_met = target is not None and hit is None and target.met(row)
    if newly_met:
      hit = row
    stop = hit is not None and target.stop
    finished = done == plan.total_steps or stop
    ends_epoch = seg.start + seg.steps == plan.steps_per_epoch
    if checkpoints is not None and (ends_epoch or finished):
      checkpoints.maybe_save(done, plan.epoch_at(done), engine.state, dict(
          meta or {}, history=history, steps_done=done, epochs_done=plan.epoch_at(done),
          train_seconds=train_s, finished=finished))
    if ends_epoch or finished:
      left = (time.perf_counter() - t_loop) / (i + 1) * (len(todo) - i - 1)
      shown = "_acc" if "train_acc_running" in row else "_loss"  # a classifier's accuracy
      accs = ", ".join(f"{k[:-len(shown)]} {shown[1:]} {v:.4f}" for k, v in row.items()
                       if k.endswith(shown))
      progress(f"{label} epoch {plan.epoch_at(done)}/{plan.epochs}: {accs}, "
               f"{row['samples_per_sec']:,.0f} samples/s, about {left:.0f}s left")
    if newly_met:
      progress(f"{label}: target {target.split} {target.metric} {target.value} met at step "
               f"{hit['steps']} ({hit['examples']:,} examples)"
               + ("; stopping" if target.stop else ""))
    if stop:
      break
  out = {"status": status, "history": history, "compile_s": compile_s,
         "train_seconds": train_s, "resumed_from_epoch": resumed_at or None,
         "diverged_epoch": diverged_epoch}
  if target is not None:
    out["target"] = target_fields(target, hit, history)
    if status == "ok" and hit is None and target.stop:  # a target to record only: still ok
      out["status"] = "not_reached"
  return out


def target_fields(target, hit, history):
  """What a run says of its target: reached, where (steps, examples, seconds, epoch), and
  the best value it measured."""
  values = [v for v in map(target.measured, history) if v is not None]
  best = (max if target.direction == "max" else min)(values) if values else None
  out = {"metric": target.metric, "value": target.value, "split": target.split,
         "reached": hit is not None, "best": best}
  for field, col in (("steps", "steps"), ("examples", "examples"), ("seconds", "train_seconds"),
                     ("epoch", "epoch")):
    out[field] = hit[col] if hit else None
  return out
