"""Training for a duration: fused epochs, a compiled evaluation after each, checkpoints,
divergence, progress.

Studies that train to a result call `fit`. The host does one sync per epoch
(the summed metrics) plus the evaluations; a NaN or infinite training loss
stops the run with status `diverged` at that epoch.
"""

import math
import time

import jax

from jbatch.bench import timing
from jbatch.results.sweep import progress
from jbatch.train import loop


def fit(engine, train, evals, duration, *, batch_size, seed, last_batch, eval_batch_size,
        checkpoints=None, lr_at=None, label="", meta=None, probe=None, probe_args=None,
        on_probes=None):
  """train: (x, y) on the mesh; evals: {name: (x, y)} on the mesh, evaluated each epoch.

  probe (probes/schedule.py) runs inside the fused epochs with probe_args;
  on_probes(outputs of one epoch on the host, steps before it) returns fields
  for that epoch's history row, so that they are checkpointed with it.

  Returns {status, history, compile_s, train_seconds, resumed_from_epoch, diverged_epoch}.
  The history has one row per epoch: running train loss/acc over the epoch's
  steps, <name>_loss/<name>_acc per eval set, lr, steps, examples, seconds.
  """
  x, y = train
  n = x.shape[0]
  key = lambda e: engine.put(loop.epoch_key(seed, e))[0]
  history, start, train_s = [], 0, 0.0
  if checkpoints is not None:
    restored = checkpoints.restore_latest(engine.state)
    if restored is not None:
      engine.state, saved = restored
      history, start, train_s = saved["history"], saved["epochs_done"], saved["train_seconds"]
      progress(f"{label}: resumed from the checkpoint after epoch {start}")

  extra = () if probe is None else (probe_args,)
  epoch_fn, compile_s = timing.compile_timed(
      engine.fused_epoch(batch_size, n, last_batch, probe=probe), engine.state, x, y, key(0),
      *extra)
  evaluators = {}
  for name, (ex, ey) in evals.items():
    evaluators[name], seconds = timing.compile_timed(
        engine.evaluator(ex.shape[0], eval_batch_size), engine.weights(), ex, ey)
    compile_s += seconds

  status, diverged_epoch, t_loop = "ok", None, time.perf_counter()
  for epoch in range(start, duration.epochs):
    steps = duration.steps_in(epoch)
    run = epoch_fn
    if steps < duration.steps_per_epoch:  # the cut-short last epoch of a duration in examples
      run, seconds = timing.compile_timed(
          engine.fused_epoch(batch_size, n, last_batch, steps, probe), engine.state, x, y,
          key(epoch), *extra)
      compile_s += seconds
    t0 = time.perf_counter()
    engine.state, metrics = run(engine.state, x, y, key(epoch), *extra)
    probes = metrics.pop("probes", None)
    summary = loop.summarize(metrics)  # blocks: the epoch is done
    epoch_s = time.perf_counter() - t0
    train_s += epoch_s
    t0 = time.perf_counter()
    row = {"epoch": epoch + 1, "train_loss_running": summary["loss"],
           "train_acc_running": summary["acc"]}
    for name, evaluate in evaluators.items():
      result = loop.summarize(evaluate(engine.weights(), *evals[name]))
      row[f"{name}_loss"], row[f"{name}_acc"] = result["loss"], result["acc"]
    done_steps = epoch * duration.steps_per_epoch + steps
    row.update(steps=done_steps, examples=_examples(done_steps, duration, n, batch_size),
               train_seconds=train_s, epoch_s=epoch_s, eval_s=time.perf_counter() - t0,
               samples_per_sec=_examples(steps, duration, n, batch_size) / epoch_s,
               lr=float(lr_at(done_steps - 1)) if lr_at else None)
    if on_probes is not None:
      row.update(on_probes(jax.device_get(probes), epoch * duration.steps_per_epoch))
    history.append(row)
    if not math.isfinite(summary["loss"]):
      status, diverged_epoch = "diverged", epoch + 1
      progress(f"{label} epoch {epoch + 1}/{duration.epochs}: training loss is "
               f"{summary['loss']}; diverged, stopping this run")
      break
    finished = epoch + 1 == duration.epochs
    if checkpoints is not None:
      checkpoints.maybe_save(epoch + 1, engine.state, dict(
          meta or {}, history=history, epochs_done=epoch + 1, train_seconds=train_s,
          finished=finished))
    left = (time.perf_counter() - t_loop) / (epoch + 1 - start) * (duration.epochs - epoch - 1)
    accs = ", ".join(f"{k[:-4]} acc {v:.4f}" for k, v in row.items() if k.endswith("_acc")
                     and not k.startswith("train_acc_running"))
    progress(f"{label} epoch {epoch + 1}/{duration.epochs}: {accs}, "
             f"{row['samples_per_sec']:,.0f} samples/s, about {left:.0f}s left")
  return {"status": status, "history": history, "compile_s": compile_s,
          "train_seconds": train_s, "resumed_from_epoch": start or None,
          "diverged_epoch": diverged_epoch}


def _examples(steps, duration, num_train, batch_size):
  """Examples seen in `steps` steps: every epoch's last step may be a short one."""
  per_epoch = min(duration.steps_per_epoch * batch_size, num_train)
  epochs, rest = divmod(steps, duration.steps_per_epoch)
  return epochs * per_epoch + rest * batch_size
