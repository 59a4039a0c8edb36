"""S4, batch size vs hardware (seeds/004): seconds for E epochs by batch size, device and framework.

Grid: batch sizes x device kinds present x variant, where a variant is the
JAX engine with fused epochs or a per-step host loop, or PyTorch eager or
torch.compile on the same model, data and steps. Each point records compile
time apart, a warm-up epoch, then E timed epochs; FLOPs and bytes come from
XLA's analyses of the compiled train step.
"""

import time

import jax
import numpy as np

from jbatch import config as config_lib
from jbatch.bench import timing
from jbatch import workloads
from jbatch.errors import UserError
from jbatch.results import sweep
from jbatch.studies import throughput_report
from jbatch.train import loop, optim, parallel, plan as plan_lib, point as point_lib

NAME = "throughput"
VARIANTS = ("jax_fused", "jax_host", "torch_eager", "torch_compile")


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.batch_sizes = (100, 1000, 10000, "full")
  c.epochs = 3
  c.warmup_epochs = 1
  c.variants = ("jax_fused", "jax_host", "torch_eager")
  c.device_kinds = ("cpu", "gpu")  # those present are used
  c.pow2_probe = (255, 256, 257, 1000, 1024)  # jax_fused only; () to skip
  c.peak_flops = 0.0  # FLOP/s per device for the fraction-of-peak column; 0: known GPUs only
  c.max_batch = True  # search the largest batch whose train step fits, per device kind
  c.memory_budget = 0  # bytes for that search; 0: the device's limit (GPU) or the RAM (CPU)
  return c


def validate(config, workload):
  num_train = workloads.check(config, workload)
  optim.check(config.optimizer)
  for v in config_lib.names(config.variants):
    if v not in VARIANTS:
      raise UserError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if v.startswith("torch") and workload.torch_twin is None:
      raise UserError(f"variant {v} needs a PyTorch twin of the model; workload "
                      f"{workload.name} has none: drop it from --config.variants")
  if config.warmup_epochs < 0:
    raise UserError("warmup_epochs must be >= 0")
  if config.memory_budget < 0:
    raise UserError("memory_budget must be >= 0 bytes (0: the device's own limit)")
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train) + tuple(config.pow2_probe)
    plan_lib.check_batch_sizes(config, sizes, num_train)
    _check_device_split(config, sizes, num_train)


def _check_device_split(config, sizes, num_train):
  for kind in parallel.present_kinds(config_lib.names(config.device_kinds)):
    n = len(parallel.make_mesh(kind, config.num_devices).devices.flat)
    for b in sizes:
      config_lib.check_devices(b, n, num_train, config.last_batch)


def _torch_available():
  try:
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def grid(config, num_train):
  fp = config_lib.fingerprint(config)
  sizes = config_lib.batch_sizes(config, num_train)
  variants = [v for v in config_lib.names(config.variants) if not v.startswith("torch") or _torch_available()]
  if len(variants) < len(config_lib.names(config.variants)):
    sweep.progress("PyTorch is not installed: torch variants skipped (pip install 'jbatch[torch]')")
  points = []
  for kind in parallel.present_kinds(config_lib.names(config.device_kinds)):
    for variant in variants:
      extra = tuple(b for b in config.pow2_probe if b not in sizes) if variant == "jax_fused" else ()
      for b in sizes + extra:
        points.append({"run_id": f"{NAME}/{variant}/{kind}/b{b}/s{config.seed}/{fp}",
                       "framework": variant.split("_")[0], "variant": variant,
                       "device_kind": kind, "batch_size": b, "pow2_probe": b in extra})
    if config.max_batch:  # batch_size 0: the point finds it
      points.append({"run_id": f"{NAME}/max_batch/{kind}/s{config.seed}/{fp}", "framework": "jax",
                     "variant": "max_batch", "device_kind": kind, "batch_size": 0})
  return points


def run(config, workload, workdir):
  dataset = workloads.load_data(config, workload)
  points = grid(config, dataset.num_train)
  sweep.run(NAME, config, workdir, points, lambda p: run_point(config, workload, dataset, p))


def run_point(config, workload, dataset, point):
  run = _run_jax if point["framework"] == "jax" else _run_torch
  if point["variant"] == "max_batch":
    run = _run_max_batch
  return {"num_train": dataset.num_train, **workloads.record_fields(workload),
          **run(config, workload, dataset, point)}


def _epoch_fields(epoch_s, plan):
  s = timing.spread(epoch_s)
  return {"epoch_s": epoch_s, "epoch_s_median": s["median"], "epoch_s_iqr": s["iqr"],
          "total_s": float(sum(epoch_s)), "steps_per_epoch": plan.steps_per_epoch,
          "step_ms_median": 1e3 * s["median"] / plan.steps_per_epoch,
          "samples_per_sec": plan.examples_per_epoch / s["median"]}


def _plan(config, batch_size, num_train):
  """One epoch of this batch size: what every timed epoch runs."""
  return plan_lib.make(num_train, batch_size, config.last_batch, epochs=1)


def _run_jax(config, workload, dataset, point):
  b = point["batch_size"]
  plan = _plan(config, b, dataset.num_train)
  p = point_lib.setup(config, workload, dataset, batch_size=b, seed=config.seed,
                      device_kind=point["device_kind"], plan=plan)
  engine = p.engine
  x, y = p.train_arrays()

  # XLA's view of one train step at this batch size: FLOPs and planned bytes.
  xb, yb = engine.put(dataset.train_x[:b], dataset.train_y[:b])
  step_exe, _ = timing.compile_timed(engine.jit(engine.train_step), engine.state, xb, yb)
  step_flops = timing.step_flops(engine.train_step, engine.state, xb, yb)
  step_mem = timing.memory(step_exe)
  del xb, yb, step_exe

  key = lambda e: engine.put(loop.epoch_key(config.seed, e))[0]  # on this mesh, not the default device
  if point["variant"] == "jax_fused":
    run_epoch, compile_s = timing.compile_timed(engine.fused_epoch(plan), engine.state, x, y,
                                                key(0))
  else:
    run_epoch = engine.host_loop(plan)
    compile_s = run_epoch.compile(engine.state, x, y)

  state, epoch_s, metrics = engine.state, [], None
  for e in range(config.warmup_epochs + config.epochs):
    t0 = time.perf_counter()
    state, metrics = run_epoch(state, x, y, key(e))
    jax.block_until_ready(state)
    if e >= config.warmup_epochs:
      epoch_s.append(time.perf_counter() - t0)
  engine.state = state
  summary = loop.summarize(metrics)

  fields = _epoch_fields(epoch_s, plan)
  fields.update(compile_s=compile_s, train_loss=summary["loss"], train_acc=summary.get("acc"),
                flops_per_step=step_flops,
                process_peak_bytes=timing.device_peak_bytes(engine.device),
                **step_mem, **p.fields())
  if step_flops:
    flops_per_sec = step_flops / b * fields["samples_per_sec"]
    peak = timing.peak_flops(engine.device, config.peak_flops)
    fields.update(flops_per_sec=flops_per_sec,
                  fraction_of_peak=flops_per_sec / (peak * engine.n_devices) if peak else None)
  if not np.isfinite(summary["loss"]):
    fields["status"] = "diverged"
  return fields


def _run_max_batch(config, workload, dataset, point):
  """The largest batch whose train step XLA plans within the budget (and, on a GPU, runs)."""
  return point_lib.largest_batch(config, workload, dataset, point["device_kind"],
                                 config.memory_budget)


def _run_torch(config, workload, dataset, point):
  import torch
  from jbatch.torch_ref.train import TorchRunner
  if point["device_kind"] != "cpu" and not torch.cuda.is_available():
    raise UserError("PyTorch has no CUDA here")
  # the twin starts from the weights the JAX points start from
  jax_model = point_lib.build_model(config, workload, config.seed, "cpu")
  runner = TorchRunner(config, workload, dataset, point["device_kind"], jax_model,
                       compile_model=point["variant"] == "torch_compile")
  plan = _plan(config, point["batch_size"], dataset.num_train)
  warm = [runner.epoch(plan)[0] for _ in range(max(config.warmup_epochs, 1))]
  results = [runner.epoch(plan) for _ in range(config.epochs)]
  epoch_s = [r[0] for r in results]
  fields = _epoch_fields(epoch_s, plan)
  # torch compiles inside its first epoch: the excess over a steady epoch.
  fields.update(compile_s=max(warm[0] - fields["epoch_s_median"], 0.0),
                train_loss=results[-1][1], train_acc=results[-1][2], n_devices=1,
                device_name=(torch.cuda.get_device_name() if runner.device.type == "cuda"
                             else "cpu"), torch_threads=torch.get_num_threads(),
                torch_channels_last=runner.channels_last, torch_autocast=runner.autocast)
  if runner.device.type == "cuda":
    fields["process_peak_bytes"] = torch.cuda.max_memory_allocated()
  if not np.isfinite(results[-1][1]):
    fields["status"] = "diverged"
  return fields


def report(records, workdir):
  return throughput_report.report(records, workdir, VARIANTS)
