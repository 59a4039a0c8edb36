"""S3 and S5, training dynamics (seeds/002): per-example gradient norms, distance from the
initial weights, update sizes, the gradient noise scale, sharpness, and gradient accumulation.

Two kinds of grid point:
  train         batch sizes x LR rules x optimizers x seeds: trains with the
                probes of probes/schedule.py inside the fused epochs, then
                measures the top Hessian eigenvalue; checkpointed and resumed
                like the accuracy study.
  accumulation  for each k in accumulation.steps and BatchNorm off/on: k
                micro-batches of accumulation.micro_batch accumulated into
                one step vs one batch of k * micro_batch, same data order and
                LR; the parameters' difference and both accuracies.
"""

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jbatch import config as config_lib, workloads
from jbatch.bench import timing
from jbatch.errors import UserError
from jbatch.probes import noise_scale, per_example, schedule as probe_lib, sharpness
from jbatch.results import sweep
from jbatch.studies import dynamics_report
from jbatch.train import parallel, plan as plan_lib, point as point_lib, schedules

NAME = "dynamics"
MULTI_PROCESS = True  # every point trains on one mesh, which may span processes
PUBLISHED = [
    "McCandlish et al. 2018, MNIST: B_simple about 900, critical batch about 200 (SVHN 4,000 "
    "/ 500, CIFAR-10 2,000 / 900).",
    "seeds/002 (MNIST CNN): per-example gradient norms are heavier tailed for large batches; "
    "larger batches move further from the initial weights for the same number of samples; "
    "with Adam the final distance is the same from any initialization.",
    "Keskar et al. 2016: large-batch runs end at sharper minima (larger top Hessian eigenvalue).",
]
# The accumulation points' own settings are in their run ids instead.
_NOT_IN_HASH = ("study", "batch_sizes", "rules", "optimizers", "seeds", "checkpoint_every",
                "learning_rates", "accumulation")


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.dataset = "mnist"
  c.train_subset = 4_096
  c.model = "cnn"
  c.cnn.channels = (8, 16)
  c.cnn.hidden = 32
  c.batch_sizes = (16, 256)
  c.epochs = 2
  c.rules = ("none",)
  c.optimizers = ("sgd", "adam")
  c.learning_rates = ml_collections.ConfigDict({"sgd": 0.05, "nesterov": 0.05, "adam": 1e-3,
                                                "adamw": 1e-3})
  c.optimizer.momentum = 0.0
  c.schedule = schedules.default_config(decay="constant")
  c.seeds = (0,)
  c.probes = probe_lib.default_config(every_examples=1_024)
  # Power iteration until the eigenvalue changes by under tol (relative), at most iters
  # (0: skip), on the evaluation-mode loss of the first `examples` training examples.
  c.sharpness = ml_collections.ConfigDict(dict(iters=20, tol=1e-3, examples=512))
  c.accumulation = ml_collections.ConfigDict(dict(
      micro_batch=32, steps=(4,), batchnorm=(False, True), epochs=1))  # steps (): skip
  c.eval_train_examples = 4_096
  c.checkpoint_every = 1
  c.device_kind = "auto"
  return c


def validate(config, workload):
  num_train = workloads.check(config, workload)
  if not config.seeds:
    raise UserError("seeds is empty; give at least one, e.g. --config.seeds=0")
  if config.sharpness.iters < 0 or config.sharpness.examples < 1 or config.sharpness.tol < 0:
    raise UserError("sharpness.iters and sharpness.tol must be >= 0 and sharpness.examples >= 1")
  acc = config.accumulation
  if any(k < 1 for k in acc.steps) or acc.micro_batch < 1 or acc.epochs < 1:
    raise UserError("accumulation.steps, micro_batch and epochs must be >= 1")
  optimizers = config_lib.names(config.optimizers) + (("sgd",) if acc.steps else ())
  point_lib.check(config, num_train, optimizers, config_lib.names(config.rules), workload)
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train)
    plan_lib.check_batch_sizes(config, sizes, num_train)
    n = point_lib.mesh(config).devices.size
    for b in sizes:
      config_lib.check_devices(b, n, num_train, config.last_batch)
    probe_lib.check(config.probes, sizes, n)
    probe_lib.check_fast_path(config.probes, config, workload)
    if config.probes.batch == "fixed" and config.probes.batch_size > num_train:
      raise UserError(f"probes.batch_size={config.probes.batch_size} is larger than the "
                      f"{num_train} training examples")
    for k in acc.steps:
      if k * acc.micro_batch > num_train:
        raise UserError(f"accumulation of {k} x {acc.micro_batch} is larger than the "
                        f"{num_train} training examples")
      config_lib.check_devices(k * acc.micro_batch, n, num_train, "drop")
      config_lib.check_devices(acc.micro_batch, n, num_train, "drop")


def grid(config, num_train):
  fp = config_lib.fingerprint(config, ignore=_NOT_IN_HASH)
  kind = parallel.resolve_kind(config.device_kind)
  points = []
  for b in config_lib.batch_sizes(config, num_train):
    for rule in config_lib.names(config.rules):
      for opt in config_lib.names(config.optimizers):
        for seed in config.seeds:
          lr = f"{opt}@{point_lib.base_lr(config, opt):g}"  # another LR reruns
          points.append({"run_id": f"{NAME}/b{b}/{rule}/{lr}/s{seed}/{fp}", "kind": "train",
                         "framework": "jax", "device_kind": kind, "batch_size": b, "rule": rule,
                         "optimizer": opt, "seed": seed})
  acc = config.accumulation
  # BatchNorm on and off is a built-in model's setting; a user's model runs as it is.
  batchnorm = acc.batchnorm if not config.get("workload") else (False,)
  for k in dict.fromkeys(acc.steps):
    for bn in dict.fromkeys(batchnorm):
      points.append({"run_id": f"{NAME}/accumulate{k}x{acc.micro_batch}/bn{int(bn)}/"
                               f"e{acc.epochs}/sgd@{point_lib.base_lr(config, 'sgd'):g}/"
                               f"s{config.seed}/{fp}",
                     "kind": "accumulation", "framework": "jax", "device_kind": kind,
                     "batch_size": k * acc.micro_batch, "micro_batches": k,
                     "micro_batch": acc.micro_batch, "batchnorm": bool(bn),
                     "optimizer": "sgd", "seed": config.seed})
  return points


def run(config, workload, workdir):
  dataset = workloads.load_data(config, workload)
  points = grid(config, dataset.num_train)
  train = {"train": _train_point, "accumulation": _accumulation_point}
  sweep.run(NAME, config, workdir, points,
            lambda p: train[p["kind"]](config, workload, dataset, p, workdir))


def _train_point(config, workload, dataset, point, workdir):
  b, n = point["batch_size"], dataset.num_train
  p = point_lib.setup(config, workload, dataset, batch_size=b, seed=point["seed"],
                      optimizer=point["optimizer"], rule=point["rule"])
  engine = p.engine
  init_params = jax.tree.map(jnp.copy, engine.state.params)
  probe = probe_lib.Probe(engine, config.probes, p.plan)
  train = p.train_arrays()
  pb = config.probes.batch_size
  probe_args = (init_params, train[0][:pb], train[1][:pb])
  result = point_lib.train(p, seed=point["seed"], run_id=point["run_id"], workdir=workdir,
                           meta={"run_id": point["run_id"]}, probe=probe, probe_args=probe_args,
                           on_probes=lambda out, steps_before: _probe_rows(out, steps_before,
                                                                           probe))
  final_distance = float(probe_lib.distance(engine.state.params, init_params))
  probe_ms = _time_probe(engine, probe, train, b, probe_args)
  series = [r for row in result["history"] for r in row.get("probes", [])]
  out = {**result, **_summary(result["history"], series), **p.fields(), "probe_ms": probe_ms,
         "final_distance": final_distance,
         "probe_count": len(series),
         "probe_fraction": (probe_ms / 1e3 * len(series) / result["train_seconds"]
                            if result["train_seconds"] else None),
         "per_example_batchnorm": "evaluation mode"}
  if config.sharpness.iters and result["status"] == "ok":
    m = min(config.sharpness.examples, n)
    out.update(_sharpness(engine, train[0][:m], train[1][:m], config.sharpness, point["seed"]))
    out["sharpness_examples"] = m
  return out


def _probe_rows(out, steps_before, probe):
  """One epoch's probe outputs (host arrays, one row per step) -> fields of its history row."""
  due = np.flatnonzero(out["due"])
  rows = []
  for i in due:
    norms = np.sqrt(out["values"]["sq_norms"][i])
    step = steps_before + int(i)  # the probe measured the parameters after this many steps
    row = {"step": step, "examples": int(probe.plan.examples_at(step)),
           "norm_mean": float(norms.mean()), "norm_std": float(norms.std())}
    row.update({k: float(v[i]) for k, v in out["values"].items() if k != "sq_norms"})
    rows.append(row)
  norms_at = lambda i: np.sqrt(out["values"]["sq_norms"][i]).tolist()
  return {"probes": rows, "norms_first": norms_at(due[0]) if len(due) else [],
          "norms_last": norms_at(due[-1]) if len(due) else []}


def _time_probe(engine, probe, train, b, probe_args, repeats=3):
  """Median ms of one probe call on its own: its cost beside a step."""
  xb, yb = train[0][:b], train[1][:b]
  fn, _ = timing.compile_timed(engine.jit(probe), engine.state, engine.state, xb, yb, probe_args)
  seconds = []
  for _ in range(repeats + 1):
    seconds.append(timing.timed(lambda: fn(engine.state, engine.state, xb, yb, probe_args))[1])
  return 1e3 * float(np.median(seconds[1:]))


def _sharpness(engine, x, y, cfg, seed):
  state = engine.state
  eig, change, used = _top_eigenvalue(engine.graphdef, engine.workload, cfg.iters,
                                      float(cfg.tol), state.params, state.model_state, x, y,
                                      jax.random.key(seed))
  return {"sharpness": float(eig), "sharpness_change": float(change),
          "sharpness_iterations": int(used),
          "sharpness_converged": bool(cfg.tol and float(change) <= cfg.tol)}


# One compiled power iteration per model and shape, shared by every point of a sweep
# (graphdefs of equal models compare equal): it takes as long to compile as a fused
# epoch, and no point's batch size or optimizer changes it.
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _top_eigenvalue(graphdef, workload, iters, tol, params, model_state, x, y, key):
  loss = lambda p: per_example.eval_losses(graphdef, workload, p, model_state, x, y).mean()
  return sharpness.top_eigenvalue(loss, params, key, iters, tol)


def _summary(history, series):
  if not history:
    return {}
  last = history[-1]
  out = {"final_test_acc": last.get("test_acc"), "final_train_acc": last.get("train_acc"),
         "final_test_loss": last["test_loss"], "final_train_loss": last["train_loss"],
         "epoch_s": float(np.mean([h["epoch_s"] for h in history])),
         "samples_per_sec": last["examples"] / last["train_seconds"],
         "norms_early": history[0].get("norms_first", []),
         "norms_late": history[-1].get("norms_last", [])}
  if series:
    half = series[len(series) // 2:]  # after the first half: less dominated by the start
    out["b_simple"] = noise_scale.b_simple([p["g2"] for p in half], [p["trace"] for p in half])
    if "g2_groups" in series[0]:
      out["b_simple_groups"] = noise_scale.b_simple([p["g2_groups"] for p in half],
                                                    [p["trace_groups"] for p in half])
  return out


def _accumulation_point(config, workload, dataset, point, workdir):
  """k accumulated micro-batches vs one batch of k * micro_batch from the same start."""
  cfg = config.copy_and_resolve_references()
  if workloads.is_builtin(workload):  # the built-in model with BatchNorm on or off
    cfg.cnn.batchnorm = cfg.mlp.batchnorm = point["batchnorm"]
    workload = workloads.builtin.from_config(cfg, data=workload.data)  # the same data
  cfg.last_batch, cfg.epochs, cfg.examples, cfg.steps = "drop", config.accumulation.epochs, 0, 0
  cfg.target.metric = ""  # both runs go the whole length
  b, k = point["batch_size"], point["micro_batches"]
  runs, t0 = {}, time.perf_counter()
  for name, micro in (("accumulated", k), ("whole", 1)):
    p = point_lib.setup(cfg, workload, dataset, batch_size=b, seed=point["seed"],
                        optimizer="sgd", micro_batches=micro)
    result = point_lib.train(p, seed=point["seed"], label=f"{point['run_id']} {name}")
    runs[name] = (p.engine.state.params, result)
  (pa, ra), (pb, rb) = runs["accumulated"], runs["whole"]
  diff = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), pa, pb))
  scale = jax.tree.leaves(jax.tree.map(lambda b: jnp.max(jnp.abs(b)), pb))
  last = lambda r, f: r["history"][-1].get(f) if r["history"] else None
  fields = p.fields()
  return {"status": "ok" if ra["status"] == rb["status"] == "ok" else "diverged",
          "max_abs_param_diff": float(max(diff)), "max_abs_param": float(max(scale)),
          "accumulated_train_acc": last(ra, "train_acc"), "accumulated_test_acc": last(ra, "test_acc"),
          "whole_train_acc": last(rb, "train_acc"), "whole_test_acc": last(rb, "test_acc"),
          "accumulated_test_loss": last(ra, "test_loss"), "whole_test_loss": last(rb, "test_loss"),
          "steps": p.plan.total_steps, "learning_rate": p.base_lr, "last_batch": "drop",
          "seconds_both": time.perf_counter() - t0, "device_name": fields["device_name"],
          "n_devices": fields["n_devices"], **point_lib.conv_fields(cfg, workload, p.platform)}


def report(records, workdir):
  return dynamics_report.report(records, workdir, PUBLISHED)
