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
from jbatch.bench import max_batch, timing
from jbatch.data import registry as data_registry
from jbatch.errors import UserError
from jbatch.models import registry as model_registry
from jbatch.results import report as report_lib, sweep
from jbatch.train import loop, optim, parallel
from jbatch.train.engine import Engine

NAME = "throughput"
VARIANTS = ("jax_fused", "jax_host", "torch_eager", "torch_compile")
PUBLISHED = {  # seeds/004, 50 epochs, i7-3770 vs GTX 1060, total seconds
    "batch": (100, 500, 1000, 2000, 5000, 10000, 135844),
    "cpu": (128.1, 75.1, 60.5, 54.3, 54.0, 52.6, 69.0),
    "gpu": (522.1, 134.5, 85.0, 60.9, 44.8, 39.7, 35.2)}


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


def validate(config):
  num_train = data_registry.check(config)
  model_registry.check(config)
  optim.check(config.optimizer)
  for v in config_lib.names(config.variants):
    if v not in VARIANTS:
      raise UserError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
  if config.warmup_epochs < 0:
    raise UserError("warmup_epochs must be >= 0")
  if config.memory_budget < 0:
    raise UserError("memory_budget must be >= 0 bytes (0: the device's own limit)")
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train) + tuple(config.pow2_probe)
    config_lib.validate_common(config, sizes, num_train)
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


def run(config, workdir):
  dataset = data_registry.load(config)
  points = grid(config, dataset.num_train)
  sweep.run(NAME, config, workdir, points, lambda p: run_point(config, dataset, p))


def run_point(config, dataset, point):
  run = _run_jax if point["framework"] == "jax" else _run_torch
  if point["variant"] == "max_batch":
    run = _run_max_batch
  return {"num_train": dataset.num_train, **run(config, dataset, point)}


def _epoch_fields(epoch_s, num_train, batch_size, last_batch):
  full, tail = loop.epoch_plan(num_train, batch_size, last_batch)
  steps = full + (1 if tail else 0)
  examples = full * batch_size + tail
  s = timing.spread(epoch_s)
  return {"epoch_s": epoch_s, "epoch_s_median": s["median"], "epoch_s_iqr": s["iqr"],
          "total_s": float(sum(epoch_s)), "steps_per_epoch": steps,
          "step_ms_median": 1e3 * s["median"] / steps,
          "samples_per_sec": examples / s["median"]}


def _run_jax(config, dataset, point):
  b, n = point["batch_size"], dataset.num_train
  mesh = parallel.make_mesh(point["device_kind"], config.num_devices)
  platform = mesh.devices.flat[0].platform
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, config.seed,
                               platform)
  engine = Engine(model, optim.make(config.optimizer), mesh)
  x, y = engine.put(dataset.train_x, dataset.train_y)

  # XLA's view of one train step at this batch size: FLOPs and planned bytes.
  xb, yb = engine.put(dataset.train_x[:b], dataset.train_y[:b])
  step_exe, _ = timing.compile_timed(jax.jit(engine.train_step), engine.state, xb, yb)
  step_flops = timing.step_flops(engine.train_step, engine.state, xb, yb)
  step_mem = timing.memory(step_exe)
  del xb, yb, step_exe

  key = lambda e: engine.put(loop.epoch_key(config.seed, e))[0]  # on this mesh, not the default device
  if point["variant"] == "jax_fused":
    run_epoch, compile_s = timing.compile_timed(engine.fused_epoch(b, n, config.last_batch),
                                                engine.state, x, y, key(0))
  else:
    run_epoch = engine.host_loop(b, n, config.last_batch)
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

  fields = _epoch_fields(epoch_s, n, b, config.last_batch)
  fields.update(compile_s=compile_s, train_loss=summary["loss"], train_acc=summary["acc"],
                device_name=engine.device.device_kind, n_devices=engine.n_devices,
                flops_per_step=step_flops,
                process_peak_bytes=timing.device_peak_bytes(engine.device),
                **step_mem, **model_registry.conv_fields(config, platform))
  if step_flops:
    flops_per_sec = step_flops / b * fields["samples_per_sec"]
    peak = timing.peak_flops(engine.device, config.peak_flops)
    fields.update(flops_per_sec=flops_per_sec,
                  fraction_of_peak=flops_per_sec / (peak * engine.n_devices) if peak else None)
  if not np.isfinite(summary["loss"]):
    fields["status"] = "diverged"
  return fields


def _run_max_batch(config, dataset, point):
  """The largest batch whose train step XLA plans within the budget (and, on a GPU, runs)."""
  mesh = parallel.make_mesh(point["device_kind"], 1)
  platform = mesh.devices.flat[0].platform
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, config.seed,
                               platform)
  engine = Engine(model, optim.make(config.optimizer), mesh)
  budget = max_batch.budget_bytes(engine.device, config.memory_budget)
  shape, step, state = dataset.input_shape, engine.train_step, engine.state
  planned = {}

  def fits(b):
    planned[b] = max_batch.planned_bytes(step, state, shape, b)
    if planned[b] is None or planned[b] > budget:
      return False
    return platform == "cpu" or max_batch.runs(step, state, shape, b)

  best, tried = max_batch.largest_batch(fits, guess=max_batch.affine_guess(planned, budget))
  return {"max_batch": best, "memory_budget_bytes": budget, "planned_bytes_at_max": planned.get(best),
          "planned_bytes_above": planned.get(best + 1), "batches_tried": len(tried),
          "method": "XLA planned bytes" + ("" if platform == "cpu" else " + one real step"),
          "device_name": engine.device.device_kind, "n_devices": 1}


def _run_torch(config, dataset, point):
  import torch
  from jbatch.torch_ref.train import TorchRunner
  if point["device_kind"] != "cpu" and not torch.cuda.is_available():
    raise UserError("PyTorch has no CUDA here")
  runner = TorchRunner(config, dataset, point["device_kind"],
                       compile_model=point["variant"] == "torch_compile")
  b = point["batch_size"]
  warm = [runner.epoch(b, config.last_batch)[0] for _ in range(max(config.warmup_epochs, 1))]
  results = [runner.epoch(b, config.last_batch) for _ in range(config.epochs)]
  epoch_s = [r[0] for r in results]
  fields = _epoch_fields(epoch_s, dataset.num_train, b, config.last_batch)
  # torch compiles inside its first epoch: the excess over a steady epoch.
  fields.update(compile_s=max(warm[0] - fields["epoch_s_median"], 0.0),
                train_loss=results[-1][1], train_acc=results[-1][2], n_devices=1,
                device_name=(torch.cuda.get_device_name() if runner.device.type == "cuda"
                             else "cpu"), torch_threads=torch.get_num_threads())
  if runner.device.type == "cuda":
    fields["process_peak_bytes"] = torch.cuda.max_memory_allocated()
  if not np.isfinite(results[-1][1]):
    fields["status"] = "diverged"
  return fields


def report(records, workdir):
  ok = [r for r in records if r["status"] == "ok"]
  out = ["## Throughput: batch size vs hardware (S4, seeds/004)", ""]
  if not ok:
    return "\n".join(out + ["No finished points yet."])
  first = ok[0]
  out.append(f"Model `{first['model']}`, dataset `{first['dataset']}` "
             f"({first.get('num_train')} training examples), {first['config']['epochs']} timed epochs after "
             f"{first['config']['warmup_epochs']} warm-up, last batch `{first['last_batch']}`, "
             f"{first['host_cpus']} host CPUs; devices: "
             + ", ".join(sorted({f"{r['device_kind']}={r['device_name']} x{r['n_devices']}" for r in ok}))
             + ". Compile time is reported apart and not included in the totals.")
  main = [r for r in ok if not r.get("pow2_probe") and r["variant"] != "max_batch"]
  sizes = sorted({r["batch_size"] for r in main})
  cell = {(r["variant"], r["device_kind"], r["batch_size"]): r for r in main}
  rows_keys = sorted({(r["variant"], r["device_kind"]) for r in main},
                     key=lambda k: (k[1], VARIANTS.index(k[0])))

  out += ["", f"### Total seconds for {first['config']['epochs']} epochs (the seeds/004 table)", ""]
  rows = [[f"{v} {k}"] + [cell.get((v, k, b), {}).get("total_s") for b in sizes] for v, k in rows_keys]
  scale = first["config"]["epochs"] / 50
  for kind in ("cpu", "gpu"):
    pub = dict(zip(PUBLISHED["batch"], PUBLISHED[kind]))
    if any(b in pub for b in sizes):
      rows.append([f"published PyTorch {kind} (x{scale:.2g} for epochs)"]
                  + [pub[b] * scale if b in pub else None for b in sizes])
  out.append(report_lib.table(["variant device"] + [str(b) for b in sizes], rows))

  out += ["", "### Ratios, side by side (time of the other / time of fused JAX; >1: JAX faster)", ""]
  ratio_rows = []
  for kind in sorted({k for _, k in rows_keys}):
    for other in ("torch_eager", "torch_compile", "jax_host"):
      vals = [_ratio(cell, other, "jax_fused", kind, b) for b in sizes]
      if any(v is not None for v in vals):
        ratio_rows.append([f"{other} / jax_fused ({kind})"] + vals)
  out.append(report_lib.table(["ratio"] + [str(b) for b in sizes], ratio_rows))

  kinds = {k for _, k in rows_keys}
  if {"cpu", "gpu"} <= kinds:
    out += ["", "### CPU vs GPU", ""]
    for variant in ("jax_fused", "torch_eager"):
      vals = [_ratio_dev(cell, variant, b) for b in sizes]
      out.append(report_lib.table([f"{variant}: gpu time / cpu time"] + [str(b) for b in sizes],
                                  [["ratio"] + vals]))
      cross = next((b for b, v in zip(sizes, vals) if v is not None and v < 1), None)
      out.append(f"\n{variant}: the GPU is faster from batch {cross} on." if cross
                 else f"\n{variant}: the GPU is not faster at any measured batch.")
  out += ["", "### Speed, compile time, FLOP/s and memory by batch size (fused JAX)", ""]
  fused = sorted([r for r in ok if r["variant"] == "jax_fused"],
                 key=lambda r: (r["device_kind"], r["batch_size"]))
  out.append(report_lib.table(
      ["device", "batch", "ms/step", "us/sample", "samples/s", "compile s", "GFLOP/s",
       "of peak", "XLA bytes/step", "process peak bytes"],
      [[r["device_kind"], r["batch_size"], r["step_ms_median"], 1e6 / r["samples_per_sec"],
        r["samples_per_sec"], r["compile_s"],
        r["flops_per_sec"] / 1e9 if r.get("flops_per_sec") else None, r.get("fraction_of_peak"),
        r.get("xla_total_bytes"), r.get("process_peak_bytes")] for r in fused]))
  largest = [r for r in ok if r["variant"] == "max_batch"]
  if largest:
    out += ["", "Largest batch whose train step fits (seeds/003), searched over compiled "
            "steps (method: whether they also ran):", "",
            report_lib.table(["device", "largest batch", "budget bytes", "planned bytes at it",
                              "planned bytes one above", "batches compiled", "method"],
                             [[r["device_kind"], r["max_batch"], r["memory_budget_bytes"],
                               r["planned_bytes_at_max"], r["planned_bytes_above"],
                               r["batches_tried"], r["method"]] for r in largest])]
  probe = [r for r in fused if r["batch_size"] in (255, 256, 257, 1000, 1024)]
  if probe:
    out += ["", "Power-of-two probe (us per sample; a power of two is not special unless its "
            "row stands out from its neighbours):", ""]
    out.append(report_lib.table(["device", "batch", "us/sample", "epoch s IQR"],
                                [[r["device_kind"], r["batch_size"], 1e6 / r["samples_per_sec"],
                                  r["epoch_s_iqr"]] for r in probe]))
  out += report_lib.unfinished(records)
  series = {}
  for v, k in rows_keys:
    xs = [b for b in sizes if (v, k, b) in cell]
    series[f"{v} {k}"] = (xs, [cell[(v, k, b)]["total_s"] for b in xs])
  out += ["", report_lib.line_plot(workdir, "throughput_total_seconds.png", series,
                                   title="Seconds for the timed epochs", xlabel="batch size",
                                   ylabel="seconds", logy=True)]
  mem = {k: ([r["batch_size"] for r in fused if r["device_kind"] == k and r.get("xla_total_bytes")],
             [r["xla_total_bytes"] / 2**20 for r in fused if r["device_kind"] == k and r.get("xla_total_bytes")])
         for k in kinds}
  out += ["", report_lib.line_plot(workdir, "throughput_memory.png", mem,
                                   title="XLA-planned memory of one train step",
                                   xlabel="batch size", ylabel="MiB", logy=True)]
  return "\n".join(out)


def _ratio(cell, num, den, kind, b):
  a, c = cell.get((num, kind, b)), cell.get((den, kind, b))
  return a["total_s"] / c["total_s"] if a and c else None


def _ratio_dev(cell, variant, b):
  g, c = cell.get((variant, "gpu", b)), cell.get((variant, "cpu", b))
  return g["total_s"] / c["total_s"] if g and c else None
