"""The loader study's report: the seeds/000 seconds-per-batch table by backend and workers,
the pipeline alone and feeding a train step, plots."""

from jbatch.results import report as report_lib

PUBLISHED_S_PER_BATCH = {4: 4.9, 8: None, 16: 1.8}  # seeds/000: MobileNetV2, batch 256, per GPU


def report(records, workdir):
  out = ["## Loader: input-pipeline workers (S2, seeds/000)", ""]
  done = [r for r in records if r["status"] == "ok"]
  if not done:
    return "\n".join(out + ["No finished points yet."])
  first = done[0]
  c = first["config"]
  out.append(
      f"{first['files']:,} JPEG files ({first['folder_bytes'] / 1e6:.1f} MB, "
      f"{first['image_hw'][0]}x{first['image_hw'][1]}, {first['skipped_files']} corrupt files "
      f"skipped) in `{first['folder']}`; random resized crop to {c['crop_size']}, flip, "
      f"normalize; batch {c['batch_size']}; {first['cores']} cores (worker counts above "
      f"{first['max_workers']} left out). Train step: `{c['model']}` "
      f"{c.get(c['model'], '')} on {first['device_kind']}={first['device_name']}. The first "
      "batch (start-up) is timed apart.")
  rows = {}
  for r in done:
    rows.setdefault((r["backend"], r["workers"]), {})[r["mode"]] = r
  out += ["", report_lib.table(
      ["backend", "workers", "alone images/s", "alone ms/batch", "train ms/batch",
       "waiting for input", "first batch s", "train step compile s"],
      [[b, w, m.get("alone", {}).get("images_per_sec"), m.get("alone", {}).get("batch_ms_median"),
        m.get("train", {}).get("batch_ms_median"),
        f"{m['train']['wait_fraction']:.0%}" if "train" in m else None,
        (m.get("alone") or m.get("train"))["first_batch_s"],
        m.get("train", {}).get("step_compile_s")]
       for (b, w), m in sorted(rows.items())])]
  out += ["", "### The seeds/000 table: seconds per batch by workers (train step fed)", ""]
  backends = sorted({b for b, _ in rows})
  counts = sorted({w for _, w in rows})
  get = lambda b, w: rows.get((b, w), {}).get("train", {}).get("batch_ms_median")
  out.append(report_lib.table(
      ["workers"] + backends + ["published (GPU, batch 256, 224x224)"],
      [[w] + [None if get(b, w) is None else get(b, w) / 1e3 for b in backends]
       + [PUBLISHED_S_PER_BATCH.get(w)] for w in counts]))
  series = {b: ([w for w in counts if (b, w) in rows and "alone" in rows[(b, w)]],
                [rows[(b, w)]["alone"]["images_per_sec"] for w in counts
                 if (b, w) in rows and "alone" in rows[(b, w)]]) for b in backends}
  out += ["", report_lib.line_plot(workdir, "loader_images_per_sec.png", series,
                                   title="Pipeline alone: images/s by workers",
                                   xlabel="workers", ylabel="images/s", logx=False)]
  out += report_lib.unfinished(records)
  return "\n".join(out)
