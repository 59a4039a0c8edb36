"""Side by side, one process: the S4 model's epoch time, fused JAX vs its host loop vs PyTorch.

  python scripts/bench_throughput.py [--epochs=3] [--num_train=135844] [--batch_sizes=100,1000,10000,full]
      [--torch_compile] [--device_kind=cpu] [--precision=float32|bfloat16]
  python scripts/bench_throughput.py --unroll=1,2,4,8 --batch_sizes=100   # steps per scan iteration
  python scripts/bench_throughput.py --block_rows=64,256 --batch_sizes=1000,10000   # weight-gradient blocks
  python scripts/bench_throughput.py --chunk_rows=4096,8192 --batch_sizes=full      # MLP chunks on a CPU

Prints median epoch seconds per variant and the ratios torch_eager/jax_fused
and jax_host/jax_fused (>1: fused JAX is faster). Each variant compiles and
warms up first; compile time is printed apart. The variants alternate within
a batch size so that machine noise hits them alike.

Then the fused step against this machine's practical peaks, measured in the same run
(timing.practical_peaks: a large matrix product's FLOP/s, a large array copy's bytes/s,
each the best of 15 calls, the range of the calls printed): XLA's flops and bytes per
step (the optimized program, chunked layers counted whole), the step's rates, the
fraction of each peak it reaches, the resource that bounds it (the longer of
flops/peak FLOP/s and bytes/peak bytes/s), and for a chunked step the FLOPs it runs
(its hidden layers' forward products twice) and their fraction of the FLOP peak.
"""

import jax
from absl import app, flags

from jbatch import workloads
from jbatch.bench import timing
from jbatch.models import cpu_matmul, mlp, registry as model_registry
from jbatch.studies import throughput
from jbatch.train import loop, point as point_lib

_EPOCHS = flags.DEFINE_integer("epochs", 3, "timed epochs per variant")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 135_844, "synthetic training examples (seeds/004)")
_BATCHES = flags.DEFINE_list("batch_sizes", ["100", "1000", "10000", "full"], "batch sizes")
_COMPILE = flags.DEFINE_bool("torch_compile", False, "also time torch.compile")
_KIND = flags.DEFINE_string("device_kind", "cpu", "cpu or gpu")
_PRECISION = flags.DEFINE_string("precision", "float32", "float32 or bfloat16 (both "
                                 "frameworks: jbatch's precision, PyTorch's autocast)")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "alternating rounds; the best median of each is kept")
_UNROLL = flags.DEFINE_list("unroll", [], "instead: fused JAX with each of these steps per scan "
                            "iteration (loop.UNROLL) beside PyTorch eager, at --batch_sizes")
_BLOCK_ROWS = flags.DEFINE_list("block_rows", [], "instead: fused JAX with each of these rows "
                                "per weight-gradient block (cpu_matmul.ROWS) beside PyTorch eager")
_CHUNK_ROWS = flags.DEFINE_list("chunk_rows", [], "instead: fused JAX with each of these rows per "
                                "MLP chunk on a CPU (registry.MLP_CPU_CHUNK) beside PyTorch eager")


def main(_):
  config = throughput.default_config()
  config.synthetic.num_train = _NUM_TRAIN.value
  config.epochs = _EPOCHS.value
  config.precision = _PRECISION.value
  workload = workloads.from_config(config)
  dataset = workloads.load_data(config, workload)
  for values, module, name in ((_UNROLL.value, loop, "UNROLL"),
                               (_BLOCK_ROWS.value, cpu_matmul, "ROWS"),
                               (_CHUNK_ROWS.value, model_registry, "MLP_CPU_CHUNK")):
    if values:
      return setting_sweep(config, workload, dataset, module, name, values)
  variants = ["jax_fused", "jax_host", "torch_eager"] + (["torch_compile"] if _COMPILE.value else [])
  print(f"S4 MLP, {dataset.num_train} examples, {config.epochs} epochs per round, "
        f"device {_KIND.value}, last batch {config.last_batch}, {config.precision}")
  header = f"{'batch':>7} " + " ".join(f"{v + ' s':>16}" for v in variants)
  print(header + f" {'torch/fused':>12} {'host/fused':>11}" + (" compile/fused" if _COMPILE.value else ""))
  fused_step_s = {}
  for b in _BATCHES.value:
    b = dataset.num_train if b == "full" else int(b)
    best = {}
    for _ in range(_ROUNDS.value):
      for v in variants:
        point = {"framework": v.split("_")[0], "variant": v, "device_kind": _KIND.value, "batch_size": b}
        record = throughput.run_point(config, workload, dataset, point)
        s = record["epoch_s_median"]
        best[v] = min(best.get(v, s), s)
        if v == "jax_fused" and s == best[v]:
          fused_step_s[b] = s / record["steps_per_epoch"]
    ratios = [best["torch_eager"] / best["jax_fused"], best["jax_host"] / best["jax_fused"]]
    if _COMPILE.value:
      ratios.append(best["torch_compile"] / best["jax_fused"])
    print(f"{b:>7} " + " ".join(f"{best[v]:>16.4f}" for v in variants)
          + "".join(f" {r:>11.2f}x" for r in ratios), flush=True)
  roofline(config, dataset, fused_step_s)


def roofline(config, dataset, fused_step_s):
  """The fused step of each batch size against the practical peaks of its device. The
  epoch's mean step (epoch seconds / steps) includes what an epoch adds to its steps:
  the shuffle, the gather of the batch, a short last batch. XLA counts the step
  unchunked, the FLOPs a step needs; a chunked CPU step (mlp.chunks) also runs its
  hidden layers' forward products a second time, for the gradient: "run" counts those."""
  device = jax.devices(_KIND.value)[0]
  peak_flops, peak_bytes, rates = timing.practical_peaks(device)
  span = lambda r: f"calls {min(r) / 1e9:.0f}-{max(r) / 1e9:.0f}"
  print(f"\npractical peaks of {device.device_kind}, the best of {len(rates['flops'])} calls: "
        f"{peak_flops / 1e9:.0f} GFLOP/s (a 2048^3 float32 product; 8192^3 on a GPU; "
        f"{span(rates['flops'])}), {peak_bytes / 1e9:.1f} GB/s (a 1 GiB array scaled in "
        f"place; {span(rates['bytes'])})")
  print(f"{'batch':>7} {'step ms':>8} {'GFLOP':>7} {'MB':>7} {'GFLOP/s':>8} {'GB/s':>6} "
        f"{'of FLOP':>8} {'of copy':>8} {'bound':>6} {'run GFLOP':>10} {'of FLOP, run':>12}")
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, 0, _KIND.value)
  for b, step_s in fused_step_s.items():
    p = point_lib.setup(config, workload, dataset, batch_size=b, seed=config.seed,
                        device_kind=_KIND.value, plan=throughput._plan(config, b, dataset.num_train))
    xb, yb = p.engine.put(dataset.train_x[:b], dataset.train_y[:b])
    c = timing.step_cost(p.engine.train_step, p.engine.state, xb, yb, compiled=True)
    flops, nbytes = c["flops"], c["bytes_accessed"]
    of_flops, of_bytes = flops / peak_flops / step_s, nbytes / peak_bytes / step_s
    split = mlp.chunks(b, model.chunk) if device.platform == "cpu" else None
    run_flops = flops + (2 * split[0] * split[1] * sum(
        layer.in_features * layer.out_features for layer in model.hidden) if split else 0)
    print(f"{b:>7} {1e3 * step_s:>8.2f} {flops / 1e9:>7.2f} {nbytes / 1e6:>7.0f} "
          f"{flops / step_s / 1e9:>8.0f} {nbytes / step_s / 1e9:>6.1f} {of_flops:>8.0%} "
          f"{of_bytes:>8.0%} {'FLOP/s' if of_flops >= of_bytes else 'bytes':>6} "
          f"{run_flops / 1e9:>10.2f} {run_flops / peak_flops / step_s:>12.0%}", flush=True)


def setting_sweep(config, workload, dataset, module, name, values):
  """torch eager / fused JAX with module.<name> set to each value in turn, read when a point
  traces its step (loop.UNROLL applies to steps under loop.SMALL_STEP_FLOPS)."""
  print(f"{name} sweep, {_KIND.value}; torch_eager s / fused s per batch size")
  for b in _BATCHES.value:
    b = dataset.num_train if b == "full" else int(b)
    best = {}
    for _ in range(_ROUNDS.value):
      for v in values + ["torch"]:
        framework, variant = ("torch", "torch_eager") if v == "torch" else ("jax", "jax_fused")
        if v != "torch":
          setattr(module, name, int(v))
        point = {"framework": framework, "variant": variant, "device_kind": _KIND.value,
                 "batch_size": b}
        s = throughput.run_point(config, workload, dataset, point)["epoch_s_median"]
        best[v] = min(best.get(v, s), s)
    print(f"batch {b}: " + ", ".join(f"{name} {v}: {best['torch'] / best[v]:.2f}x"
                                     for v in values), flush=True)


if __name__ == "__main__":
  app.run(main)
