"""S5, steps to a target and the critical batch size (Shallue et al. 2018, McCandlish et al.
2018): which batch size reaches a target soonest, in steps and in seconds on this
hardware, and where larger batches stop paying.

Grid: batch sizes x optimizers x seeds, plus one largest-batch point per
device kind. Each batch point searches `trials` learning rates (log-spaced or
quasi-random over lr_range; momentum too when momentum_range is given), each
trained until the target on the validation split held out of the training set
(the test set is reported at the end, never tuned on) or until max_examples.
Steps to target is the best trial's. The probes of the dynamics study measure
B_simple during each trial; each device kind present times a fused step at the
batch size. The report fits S(B) = S_min (1 + B_crit / B) over all points.
"""

import time

import ml_collections
import numpy as np

from jbatch import config as config_lib, workloads
from jbatch.bench import timing
from jbatch.errors import UserError
from jbatch.probes import noise_scale, schedule as probe_lib
from jbatch.results import scaling, sweep
from jbatch.studies import critical_batch_report
from jbatch.train import fit as fit_lib, loop, optim, parallel, plan as plan_lib
from jbatch.train import point as point_lib, schedules, trials as trials_lib

NAME = "critical_batch"
SEARCHES = ("log", "quasi")
# Fields that name a grid axis stay out of the hash: widening the grid keeps finished points.
_NOT_IN_HASH = ("study", "batch_sizes", "optimizers", "seeds", "checkpoint_every",
                "max_batch", "memory_budget")


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.dataset = "mnist"
  c.validation_examples = 5_000
  c.model = "cnn"
  c.cnn.channels = (32, 64)
  c.cnn.hidden = 128
  c.batch_sizes = tuple(2 ** k for k in range(4, 12))  # 16 ... 2048
  c.optimizers = ("sgd",)
  c.optimizer.momentum = 0.9
  c.schedule = schedules.default_config(decay="constant")  # the LR searched is constant
  c.seeds = (0,)
  c.trials = 8
  c.lr_range = (1e-3, 1.0)
  c.search = "log"  # log | quasi (Halton; the one that also searches momentum)
  c.momentum_range = ()  # (lo, hi): search momentum too
  c.trials_vmapped = False  # all trials of a batch size as one vmapped program (no probes)
  c.target = ml_collections.ConfigDict(dict(metric="error", value=0.01, split="validation",
                                            stop=True))
  c.max_examples = 2_000_000
  c.eval_every_examples = 8_192
  c.probes = probe_lib.default_config(every_examples=16_384)
  c.probes.enabled = True
  # Seconds per step timed apart on each device kind present; steps 0: the runs' own timing.
  c.speed = ml_collections.ConfigDict(dict(device_kinds=("cpu", "gpu"), steps=20))
  c.max_batch = True
  c.memory_budget = 0
  c.device_kind = "auto"
  c.eval_batch_size = 1_000
  return c


def validate(config, workload):
  num_train = workloads.check(config, workload)
  for name in config_lib.names(config.optimizers):
    if name not in optim.OPTIMIZERS:
      raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(optim.OPTIMIZERS)}")
  if not config.seeds:
    raise UserError("seeds is empty; give at least one, e.g. --config.seeds=0")
  if config.trials < 1:
    raise UserError(f"trials={config.trials}; give at least one learning rate to try")
  lo, hi = _range(config.lr_range, "lr_range")
  if not 0 < lo <= hi or (config.trials > 1 and lo == hi):
    raise UserError(f"lr_range=({lo}, {hi}) is empty or inverted; give 0 < low < high, e.g. "
                    "--config.lr_range=1e-3,1.0")
  if config.search not in SEARCHES:
    raise UserError(f"unknown search {config.search!r}; choose one of {', '.join(SEARCHES)}")
  if config.momentum_range:
    m_lo, m_hi = _range(config.momentum_range, "momentum_range")
    if not 0 <= m_lo < m_hi < 1:
      raise UserError(f"momentum_range=({m_lo}, {m_hi}); give 0 <= low < high < 1")
  if not _target(config, workload).metric:
    raise UserError("critical_batch needs a target: set --config.target.metric and "
                    "--config.target.value")
  if not config.target.get("stop", True):
    raise UserError("critical_batch stops each trial at its target; set "
                    "--config.target.stop=True")
  if config.schedule.decay != "constant" or config.schedule.warmup_epochs:
    raise UserError("critical_batch searches a constant learning rate; set "
                    "schedule.decay=constant and schedule.warmup_epochs=0")
  if config.max_examples <= 0 or config.eval_every_examples <= 0:
    raise UserError("max_examples and eval_every_examples must be positive")
  if config.trials_vmapped and config.num_devices not in (0, 1):
    raise UserError("trials_vmapped runs on one device; set --config.num_devices=1")
  if config.speed.steps < 0:
    raise UserError("speed.steps must be >= 0 (0: no separate timing)")
  point_lib.check(_with_target(config, workload), num_train, (), (), workload)
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train)
    plan_lib.check_batch_sizes(config, sizes, num_train)
    n = 1 if config.trials_vmapped else point_lib.mesh(config).devices.size
    for b in sizes:
      config_lib.check_devices(b, n, num_train, config.last_batch)
      if config.max_examples < b:
        raise UserError(f"max_examples={config.max_examples} is below one batch of {b}; "
                        "raise it or drop the batch size")
    if config.eval_every_examples > config.max_examples:
      raise UserError(f"eval_every_examples={config.eval_every_examples} is above "
                      f"max_examples={config.max_examples}; lower it")
    if config.probes.enabled and not config.trials_vmapped:
      probe_lib.check(config.probes, sizes, n)
      probe_lib.check_fast_path(config.probes, config, workload)
      if config.probes.batch == "fixed" and config.probes.batch_size > num_train:
        raise UserError(f"probes.batch_size={config.probes.batch_size} is larger than the "
                        f"{num_train} training examples")


def _target(config, workload):
  """config.target, or the workload's default target where the config names none."""
  if config.target.metric or not workload.target:
    return config.target
  return ml_collections.ConfigDict(dict(config.target.to_dict(), **workload.target))


def _with_target(config, workload):
  cfg = config.copy_and_resolve_references()
  cfg.target = _target(config, workload)
  return cfg


def _range(value, name):
  values = tuple(float(v) for v in config_lib.names(value)) if isinstance(value, str) else tuple(
      float(v) for v in value)
  if len(values) != 2:
    raise UserError(f"{name} needs two values (low, high); got {value!r}")
  return values


def trials_of(config, seed):
  momentum = _range(config.momentum_range, "momentum_range") if config.momentum_range else None
  method = "quasi" if momentum else config.search
  space = trials_lib.search_space(_range(config.lr_range, "lr_range"), config.trials, method,
                                  momentum)
  return [trials_lib.Trial(lr, m, seed) for lr, m in space]


def grid(config, num_train):
  fp = config_lib.fingerprint(config, ignore=_NOT_IN_HASH)
  kind = parallel.resolve_kind(config.device_kind)
  points = []
  for b in config_lib.batch_sizes(config, num_train):
    for opt in config_lib.names(config.optimizers):
      for seed in config.seeds:
        points.append({"run_id": f"{NAME}/b{b}/{opt}/s{seed}/{fp}", "kind": "batch",
                       "framework": "jax", "device_kind": kind, "batch_size": b,
                       "optimizer": opt, "seed": seed})
  if config.max_batch:
    for k in parallel.present_kinds(config_lib.names(config.speed.device_kinds)):
      points.append({"run_id": f"{NAME}/max_batch/{k}/m{config.memory_budget}/{fp}",
                     "kind": "max_batch",
                     "framework": "jax", "device_kind": k, "batch_size": 0, "seed": config.seed})
  return points


def run(config, workload, workdir):
  dataset = workloads.load_data(config, workload)
  run_point = {"batch": _batch_point, "max_batch": _max_batch_point}
  sweep.run(NAME, config, workdir, grid(config, dataset.num_train),
            lambda p: run_point[p["kind"]](_with_target(config, workload), workload, dataset,
                                           p))


def _plan(config, batch_size, num_train):
  return plan_lib.make(num_train, batch_size, config.last_batch, examples=config.max_examples,
                       eval_every_examples=config.eval_every_examples)


def _batch_point(config, workload, dataset, point):
  b, seed = point["batch_size"], point["seed"]
  plan = _plan(config, b, dataset.num_train)
  cfg = config.copy_and_resolve_references()
  cfg.optimizer.name = point["optimizer"]
  if config.trials_vmapped:
    cfg.num_devices = 1
  p = point_lib.setup(cfg, workload, dataset, batch_size=b, seed=seed, plan=plan, inject=True)
  target = fit_lib.check_target(config.target, ("train", "test", "validation"), workload)
  trials = trials_of(config, seed)
  t0 = time.perf_counter()
  if config.trials_vmapped:
    results = trials_lib.run_vmapped(p, trials, target, config.eval_batch_size)
  else:
    if config.probes.enabled:
      probe = probe_lib.Probe(p.engine, config.probes, plan)
      x, y = p.train_arrays()
      pb = config.probes.batch_size
      results = trials_lib.run_sequential(p, trials, target, probe, (x[:pb], y[:pb]),
                                          _probe_rows)
    else:
      results = trials_lib.run_sequential(p, trials, target)
  search_s = time.perf_counter() - t0
  rows = [row for row, _ in results]
  out = {"trials": rows, "search_seconds": search_s, "optimizer": point["optimizer"],
         "momentum": config.optimizer.momentum, "trials_vmapped": bool(config.trials_vmapped),
         "max_examples": config.max_examples, "target": dict(config.target.to_dict()),
         "n_reached": sum(r["reached"] for r in rows),
         "compile_s": sum(res["compile_s"] for _, res in results), **p.fields()}
  best = scaling.best(rows)  # the fewest steps to the target
  out["status"] = "ok" if best is not None else "not_reached"
  if best is not None:
    best_result = results[rows.index(best)][1]
    lrs = sorted({r["lr"] for r in rows})
    out.update(best_lr=best["lr"], best_momentum=best["momentum"],
               best_lr_edge=("low" if best["lr"] == lrs[0] and len(lrs) > 1 else
                             "high" if best["lr"] == lrs[-1] and len(lrs) > 1 else None),
               steps_to_target=best["steps"], examples_to_target=best["examples"],
               seconds_to_target_same_run=best["seconds"],
               s_per_step_same_run=best["s_per_step"], best_test_acc=best.get("test_acc"),
               best_test_loss=best.get("test_loss"),
               **_noise_scale(best_result, best["steps"]))
  out["s_per_step"] = _speed(config, workload, dataset, b)
  if best is not None:
    out["time_to_target"] = {k: out["steps_to_target"] * s for k, s in out["s_per_step"].items()}
  return out


def _probe_rows(out, steps_before):
  """A segment's probe outputs -> the noise-scale estimates, by the step they measured."""
  rows = []
  for i in np.flatnonzero(out["due"]):
    v = out["values"]
    row = {"step": steps_before + int(i), "g2": float(v["g2"][i]), "trace": float(v["trace"][i])}
    if "g2_groups" in v:
      row.update(g2_groups=float(v["g2_groups"][i]), trace_groups=float(v["trace_groups"][i]))
    rows.append(row)
  return {"probes": rows}


def _noise_scale(result, steps_to_target):
  """B_simple of the best trial: over its whole run, and from the last three probes at or
  before the target."""
  series = [r for row in result["history"] for r in row.get("probes", [])]
  if not series:
    return {}
  upto = [r for r in series if r["step"] <= steps_to_target][-3:] or series[-1:]
  out = {"b_simple_mean": noise_scale.b_simple([r["g2"] for r in series],
                                               [r["trace"] for r in series]),
         "b_simple_at_target": noise_scale.b_simple([r["g2"] for r in upto],
                                                    [r["trace"] for r in upto]),
         "probe_count": len(series)}
  if "g2_groups" in series[0]:
    out["b_simple_groups_mean"] = noise_scale.b_simple([r["g2_groups"] for r in series],
                                                       [r["trace_groups"] for r in series])
  return out


def _speed(config, workload, dataset, batch_size):
  """Seconds per fused step at this batch size on each device kind present: a segment of
  speed.steps steps, compiled apart, median of three after a warm-up."""
  if not config.speed.steps:
    return {}
  out = {}
  for kind in parallel.present_kinds(config_lib.names(config.speed.device_kinds)):
    epoch = plan_lib.make(dataset.num_train, batch_size, "drop", epochs=1)
    plan = plan_lib.make(dataset.num_train, batch_size, "drop",
                         steps=min(config.speed.steps, epoch.total_steps))  # within an epoch
    cfg = config.copy_and_resolve_references()
    cfg.num_devices = 1
    p = point_lib.setup(cfg, workload, dataset, batch_size=batch_size, seed=config.seed,
                        device_kind=kind, plan=plan)
    x, y = p.train_arrays()
    seg = plan.segments()[0]
    start = () if seg.steps == plan.steps_per_epoch else (0,)
    key = p.engine.put(loop.epoch_key(config.seed, 0))[0]
    fn, _ = p.engine.compiled_epoch(plan, seg, (p.engine.state, x, y, key, *start))
    state = p.engine.state

    def run():
      nonlocal state
      state, m = fn(state, x, y, key, *start)
      return m
    out[kind] = timing.median_seconds(run, 3, warmup=1) / seg.steps
  return out


def _max_batch_point(config, workload, dataset, point):
  return point_lib.largest_batch(config, workload, dataset, point["device_kind"],
                                 config.memory_budget)


def report(records, workdir):
  return critical_batch_report.report(records, workdir)
