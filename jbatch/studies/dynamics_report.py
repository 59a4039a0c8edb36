"""The dynamics study's section of report.md: tables and figures from its records alone."""

import numpy as np

from jbatch.probes import noise_scale
from jbatch.results import report as report_lib


def _noise(value):
  return "below noise" if value is not None and noise_scale.below_noise(value) else value


def _sharpness(r):
  if r.get("sharpness") is None:
    return None
  done = "converged" if r.get("sharpness_converged") else (
      f"not converged, last change {r.get('sharpness_change', float('nan')):.1e}")
  return f"{r['sharpness']:.4g} ({r.get('sharpness_iterations')}, {done})"


def _label(r):
  return f"b{r['batch_size']} {r['rule']} {r['optimizer']} s{r['seed']}"


def _pair(r, metric):
  """'accumulated / whole' of a metric of an accumulation record ('-' where it has none)."""
  a, w = r.get(f"accumulated_{metric}"), r.get(f"whole_{metric}")
  return "-" if a is None or w is None else f"{a:.4f} / {w:.4f}"


def report(records, workdir, published):
  out = ["## Dynamics: gradient norms, distance, noise scale, sharpness, accumulation "
         "(S3, S5, seeds/002)", ""]
  train = sorted([r for r in records if r.get("kind") == "train" and r["status"] in ("ok", "diverged")],
                 key=lambda r: (r["optimizer"], r["batch_size"], r["rule"], r["seed"]))
  accum = [r for r in records if r.get("kind") == "accumulation" and r["status"] == "ok"]
  if not train and not accum:
    return "\n".join(out + ["No finished points yet."])
  if train:
    first = train[0]
    c = first["config"]
    p = c["probes"]
    when = (f"every {p['every']} steps" if p["every"] else
            f"every {p['every_examples']:,} examples seen")
    out.append(
        f"Model `{first['model']}` {c.get(first['model'], '')}, dataset `{first['dataset']}` "
        f"({first['num_train']:,} training examples), {c['epochs']} epochs, base LRs "
        f"{c['learning_rates']} at batch {c['schedule']['base_batch_size']}; device "
        f"{first['device_kind']}={first['device_name']} x{first['n_devices']}. Probes {when} "
        f"on the {p['batch']} batch ({p['batch_size']} examples when fixed), per-example norms "
        f"by `{p['method']}`, BatchNorm (if any) in {first['per_example_batchnorm']}. "
        "B_simple = tr(Sigma)/|G|^2 from the second half of the probes: from per-example "
        f"gradients, and from {'devices' if first['n_devices'] > 1 else str(p['groups']) + ' groups'} "
        "of the probe batch.")
    out += ["", report_lib.table(
        ["batch / rule / optimizer / seed", "test acc", "train acc", "s/epoch", "samples/s",
         "compile s",
         "distance from init", "B_simple (per-example)", "B_simple (groups)",
         "sharpness (iterations, converged)",
         "probe ms", "probes", "probe share of training", "status"],
        [[_label(r), r.get("final_test_acc"), r.get("final_train_acc"), r.get("epoch_s"),
          r.get("samples_per_sec"), r.get("compile_s"), r.get("final_distance"), _noise(r.get("b_simple")),
          _noise(r.get("b_simple_groups")), _sharpness(r), r.get("probe_ms"), r.get("probe_count"),
          f"{r['probe_fraction']:.1%}" if r.get("probe_fraction") is not None else None,
          r["status"]] for r in train])]
    out += ["", "With probes off the fused epoch has no probe code at all; the share above is "
            "the probe's own time (timed alone, median of 3) times the number of probes, over "
            "the training time."]
    out += _figures(train, workdir)
  if accum:
    out += ["", "### Gradient accumulation: k micro-batches vs one batch of k x micro-batch", "",
            report_lib.table(
                ["k x micro", "BatchNorm", "steps", "max |param diff|", "max |param|",
                 "train acc (accum / whole)", "test acc or loss (accum / whole)"],
                [[f"{r['micro_batches']} x {r['micro_batch']}", r["batchnorm"], r["steps"],
                  r["max_abs_param_diff"], r["max_abs_param"], _pair(r, "train_acc"),
                  _pair(r, "test_acc") if r.get("whole_test_acc") is not None
                  else _pair(r, "test_loss")]
                 for r in sorted(accum, key=lambda r: (r["micro_batches"], r["batchnorm"]))]),
            "", "Without BatchNorm the two agree to float rounding; with it each micro-batch is "
            "normalized by its own statistics, so they part."]
  out += ["", "Published figures to compare with:", ""] + [f"- {p}" for p in published]
  out += report_lib.unfinished(records, ("ok", "diverged"))
  return "\n".join(out)


def _figures(train, workdir):
  out = []
  panels = {}
  for r in train:
    for when, field in (("early", "norms_early"), ("late", "norms_late")):
      values = np.asarray(r.get(field) or [])
      if values.size:  # normalized to the same mean, as seeds/002 plots them
        panels.setdefault(f"{r['optimizer']} {when}", {})[f"b{r['batch_size']}"] = (
            values / values.mean())
  out += ["", report_lib.histograms(workdir, "dynamics_norm_hist.png", panels,
                                    title="Per-example gradient norms / their mean",
                                    xlabel="norm / mean norm")]
  series = lambda field: {_label(r): ([p["examples"] for p in r["history_probes"]],
                                      [p[field] for p in r["history_probes"]]) for r in train}
  for r in train:
    r["history_probes"] = [p for row in r["history"] for p in row.get("probes", [])]
  out += ["", report_lib.line_plot(workdir, "dynamics_distance.png", series("distance"),
                                   title="Distance from the initial weights",
                                   xlabel="examples seen", ylabel="|w - w0|")]
  out += ["", report_lib.line_plot(workdir, "dynamics_update.png", series("update"),
                                   title="Size of one update", xlabel="examples seen",
                                   ylabel="|w_t+1 - w_t|", logy=True)]
  b_simple, left_off = {}, 0
  for r in train:
    probes = r["history_probes"]
    if probes:
      values = noise_scale.smoothed_b_simple([p["g2"] for p in probes],
                                             [p["trace"] for p in probes])
      kept = [(p["examples"], v) for p, v in zip(probes, values)
              if not noise_scale.below_noise(v)]
      left_off += len(values) - len(kept)
      b_simple[_label(r)] = ([e for e, _ in kept], [v for _, v in kept])
  out += ["", report_lib.line_plot(workdir, "dynamics_b_simple.png", b_simple,
                                   title="B_simple (per-example estimate, EMA-smoothed)",
                                   xlabel="examples seen", ylabel="B_simple", logy=True)]
  if left_off:
    out.append(f"\n{left_off} estimate(s) below the noise (|G|^2 averaged at or under 0) are "
               "left off this log plot.")
  for r in train:
    del r["history_probes"]
  return out
