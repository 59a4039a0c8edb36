"""The throughput study's report: the seeds/004 table, ratios to fused JAX, CPU vs GPU,
FLOP/s and memory by batch size, the largest batch, the power-of-two probe, plots."""

from jbatch.results import report as report_lib

PUBLISHED = {  # seeds/004, 50 epochs, i7-3770 vs GTX 1060, total seconds
    "batch": (100, 500, 1000, 2000, 5000, 10000, 135844),
    "cpu": (128.1, 75.1, 60.5, 54.3, 54.0, 52.6, 69.0),
    "gpu": (522.1, 134.5, 85.0, 60.9, 44.8, 39.7, 35.2)}


def report(records, workdir, variants):
  """variants: the study's variants, in the order their rows are shown."""
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
                     key=lambda k: (k[1], variants.index(k[0])))

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
                              "smallest batch over", "planned bytes there", "batches compiled",
                              "method"],
                             [[r["device_kind"], r["max_batch"], r["memory_budget_bytes"],
                               r["planned_bytes_at_max"], r.get("smallest_batch_over"),
                               r.get("planned_bytes_over", r.get("planned_bytes_above")),
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
