"""Compares the records of two run folders point by point, timings aside: what a refactor
must leave unchanged.

  python scripts/compare_records.py BEFORE_DIR AFTER_DIR

Points are matched by run id without its config hash; every field but timings, dates,
versions and paths must be equal (floats exactly). Fields only the new records have are
listed apart and allowed. Prints each difference and exits 1 when there is one.
"""

import json
import math
import os
import sys

# Fields that measure time or describe the run rather than its result.
IGNORED = {"seconds", "started", "host_load_1m", "run_id", "config", "git_rev", "compile_s",
           "train_seconds", "probe_ms", "probe_fraction", "epoch_s", "eval_s",
           "samples_per_sec", "seconds_both", "checkpoint_dir", "epoch_s_median",
           "epoch_s_iqr", "total_s", "step_ms_median", "flops_per_sec", "fraction_of_peak",
           "process_peak_bytes", "versions", "seconds_to_target", "search_seconds",
           "s_per_step", "s_per_step_same_run", "time_to_target",
           "seconds_to_target_same_run", "torch_threads", "images_per_sec", "folder",
           "first_batch_s", "batch_ms_median", "wait_ms_median", "wait_fraction",
           "step_compile_s", "step_ms"}


def load(workdir):
  with open(os.path.join(workdir, "results.jsonl")) as f:
    return {json.loads(line)["run_id"].rsplit("/", 1)[0]: json.loads(line) for line in f}


def differences(a, b, path):
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      if k in IGNORED:
        continue
      if k not in a or k not in b:
        out.append(f"{path}.{k}: only in {'after' if k in b else 'before'}")
      else:
        out += differences(a[k], b[k], f"{path}.{k}")
    return out
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f"{path}: {len(a)} items before, {len(b)} after"]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
  if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
    return []
  return [] if a == b else [f"{path}: {a!r} before, {b!r} after"]


def main(before, after):
  a, b = load(before), load(after)
  found = [f"only before: {k}" for k in a if k not in b] + [f"only after: {k}" for k in b if k not in a]
  for k in a:
    if k in b:
      found += differences(a[k], b[k], k)
  added = sorted({d.split(": ")[0].rsplit(".", 1)[-1] for d in found if d.endswith("only in after")})
  found = [d for d in found if not d.endswith("only in after")]
  if added:
    print(f"fields only in the new records (allowed): {', '.join(added)}")
  print("\n".join(found) if found else f"{len(a)} points, identical (timings aside)")
  return 1 if found else 0


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:3]))
