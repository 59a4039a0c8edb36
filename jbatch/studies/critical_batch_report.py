"""The critical-batch study's report: the batch that reaches the target soonest here, the
fit S(B) = S_min (1 + B_crit / B) with its bootstrap interval, B_simple beside B_crit,
time to target per device kind, the best LR against the linear and square-root rules,
every trial, and the Shallue plot."""

import math

import numpy as np

from jbatch.probes import noise_scale
from jbatch.results import report as report_lib, scaling

PUBLISHED = [
    "McCandlish et al. 2018, MNIST: critical batch about 200, B_simple about 900 (SVHN "
    "500 / 4,000; CIFAR-10 900 / 2,000; ImageNet 15,000 / 30,000).",
    "Shallue et al. 2018: steps to target fall in proportion to the batch (perfect scaling), "
    "then more slowly, then not at all; targets MNIST error 0.01, Fashion-MNIST 0.1, "
    "CIFAR-10 ResNet-8 0.3.",
]


def _noise(values):
  """The geometric mean of the B_simple estimates that are above the noise; 'below noise'
  where every estimate there is is not."""
  measured = [v for v in values if v is not None]
  kept = [v for v in measured if not noise_scale.below_noise(v)]
  return _geomean(kept) if kept else ("below noise" if measured else None)


def _geomean(values):
  values = [v for v in values if v]
  return float(np.exp(np.mean(np.log(values)))) if values else None


def report(records, workdir):
  out = ["## Critical batch: steps to a target by batch size (S5, Shallue et al., "
         "McCandlish et al.)", ""]
  points = [r for r in records if r.get("kind") == "batch" and r["status"] in ("ok",
                                                                               "not_reached")]
  if not points:
    return "\n".join(out + ["No finished points yet."] + report_lib.unfinished(records))
  first = points[0]
  c, t = first["config"], first["target"]
  out.append(
      f"Model `{first['model']}` {c.get(first['model'], '')}, dataset `{first['dataset']}` "
      f"({first['num_train']:,} training examples, {c['validation_examples']:,} held out for "
      f"validation), target validation {t['metric']} {'>=' if t['metric'] == 'acc' else '<='} "
      f"{t['value']}, up to {first['max_examples']:,} examples per trial, evaluated every "
      f"{c['eval_every_examples']:,} examples; {len(first['trials'])} trials per batch over "
      f"LR {tuple(c['lr_range'])} ({'vmapped' if first['trials_vmapped'] else 'one by one'}), "
      f"momentum {first['momentum']}, last batch `{first['last_batch']}`; device "
      f"{first['device_kind']}={first['device_name']} x{first['n_devices']}.")
  largest = {r["device_kind"]: r for r in records
             if r.get("kind") == "max_batch" and r["status"] == "ok"}
  for opt in sorted({r["optimizer"] for r in points}):
    out += _optimizer_section(workdir, opt, [r for r in points if r["optimizer"] == opt],
                              largest)
  if largest:
    out += ["", "Largest batch whose train step fits (XLA's plan within the budget):", "",
            report_lib.table(["device", "largest batch", "budget bytes", "compiles"],
                             [[k, r["max_batch"], r["memory_budget_bytes"], r["batches_tried"]]
                              for k, r in sorted(largest.items())])]
  out += ["", "Published figures to compare with:", ""] + [f"- {p}" for p in PUBLISHED]
  out += report_lib.unfinished(records, ("ok", "not_reached"))
  return "\n".join(out)


def _optimizer_section(workdir, opt, points, largest):
  sizes = sorted({r["batch_size"] for r in points})
  by_b = {b: [r for r in points if r["batch_size"] == b] for b in sizes}
  study_fit = scaling.fit_points(by_b)
  steps, fitted, interval = study_fit["steps"], study_fit["fit"], study_fit["interval"]
  reached = [b for b in sizes if steps[b]]
  kinds = sorted({k for r in points for k in r.get("s_per_step", {})})
  s_per_step = {(b, k): float(np.median([r["s_per_step"][k] for r in by_b[b]
                                         if k in r.get("s_per_step", {})]))
                for b in sizes for k in kinds}
  times = {(b, k): steps[b] * s_per_step[(b, k)] for b in reached for k in kinds}
  out = ["", f"### {opt}", ""]
  if any(len(rs) > 1 for rs in by_b.values()):
    out += ["Steps to target at a batch size: the fewest over learning rates of the median "
            "over seeds (the best of many noisy trials would be biased low).", ""]
  out.append(_headline(reached, steps, times, kinds, fitted, largest))
  b_simple = {b: _noise([r.get("b_simple_mean") for r in by_b[b]]) for b in sizes}
  b_at = {b: _noise([r.get("b_simple_at_target") for r in by_b[b]]) for b in sizes}
  if fitted:
    lo_hi = interval["b_crit"]
    out += ["", f"Fit S(B) = S_min (1 + B_crit / B) by least squares on log steps: "
            f"**B_crit = {fitted['b_crit']:,.0f}**"
            + (f" ({interval['level']:.0%} bootstrap interval {lo_hi[0]:,.0f} - {lo_hi[1]:,.0f}"
               f" over {interval['replicates']} resamples of the {interval['resampled']})"
               if lo_hi else "")
            + f", S_min = {fitted['s_min']:,.0f} steps, E_min = S_min B_crit = "
            f"{fitted['e_min']:,.0f} examples, rms of log residuals {fitted['rms_log']:.3f}."
            + (" The best B_crit lies at the edge of the searched range: the measured batch "
               "sizes do not bracket it." if fitted["at_edge"] else "")]
    bs = [v for v in b_simple.values() if isinstance(v, float)]
    if bs:
      out.append(f"B_simple (per-example estimate, mean over each best trial, geometric mean "
                 f"over batch sizes): {_geomean(bs):,.0f}; B_crit / B_simple = "
                 f"{fitted['b_crit'] / _geomean(bs):.2f} (McCandlish et al.: B_crit is about "
                 "B_simple where the noise scale is measured well, and below it early in "
                 "training).")
  rows = []
  for b in sizes:
    rs = by_b[b]
    best = [r for r in rs if r.get("best_lr")]
    edge = sorted({r["best_lr_edge"] for r in best if r.get("best_lr_edge")})
    examples = (steps[b] * b if steps[b] and len(rs) > 1 else  # the tuned steps' examples
                _geomean([r.get("examples_to_target") for r in rs]))
    rows.append([b, steps[b], examples,
                 _geomean([r.get("best_lr") for r in best]),
                 ("widen lr_range " + ("down" if edge == ["low"] else "up" if edge == ["high"]
                                       else "both ways")) if edge else "",
                 f"{sum(r['n_reached'] for r in rs)}/{sum(len(r['trials']) for r in rs)}",
                 b_simple[b], b_at[b]]
                + [times.get((b, k)) for k in kinds]
                + [scaling.region(fitted, b) if fitted else None,
                   sum(r.get("compile_s") or 0 for r in rs),
                   "not_reached" if not steps[b] else "ok"])
  out += ["", report_lib.table(
      ["batch", "steps to target", "examples", "best LR", "edge", "trials reached",
       "B_simple mean", "B_simple at target"] + [f"s to target ({k})" for k in kinds]
      + ["region", "compile s", "status"], rows)]
  if reached:
    b0 = reached[0]
    lr0 = _geomean([r.get("best_lr") for r in by_b[b0]])
    out += ["", f"Best LR against the scaling rules from batch {b0}:", "",
            report_lib.table(["batch", "best LR", "linear rule", "sqrt rule"],
                             [[b, _geomean([r.get("best_lr") for r in by_b[b]]),
                               lr0 * b / b0, lr0 * math.sqrt(b / b0)] for b in reached])]
  m = "acc" if any("test_acc" in t for r in points for t in r["trials"]) else "loss"
  out += ["", f"Every trial (the validation split decides; the test {m} is the trial's at "
          "its end):", "",
          report_lib.table(["batch", "seed", "LR", "momentum", "status", "steps to target",
                            "best validation", "steps run", f"test {m}"],
                           [[r["batch_size"], t["seed"], t["lr"], t["momentum"], t["status"],
                             t["steps"], t["best"], t["steps_run"], t.get(f"test_{m}")]
                            for r in sorted(points, key=lambda r: r["batch_size"])
                            for t in r["trials"]])]
  out += _plots(workdir, opt, reached, steps, fitted, by_b, times, kinds)
  return out


def _headline(reached, steps, times, kinds, fitted, largest):
  if not reached:
    return "No batch size reached the target: raise max_examples or widen lr_range."
  parts = []
  for k in kinds:
    fastest = min(reached, key=lambda b: times[(b, k)])
    parts.append(f"On {k} the batch that reaches the target fastest is **{fastest}**, in "
                 f"{times[(fastest, k)]:.3g} s ({steps[fastest]:,.0f} steps)")
  if not parts:
    fewest = min(reached, key=lambda b: steps[b])
    parts.append(f"Batch {fewest} reaches the target in the fewest steps ({steps[fewest]:,.0f})")
  sentence = "; ".join(parts) + "."
  if fitted:
    # From the fit, not the two noisy measurements: S(2B) / S(B) = (2B + B_crit) / (2B + 2 B_crit).
    past = [b for b in reached if b >= fitted["b_crit"] and 2 * b in steps and steps[2 * b]]
    if past:
      b = past[0]
      ratio = scaling.steps_at(fitted, 2 * b) / scaling.steps_at(fitted, b)
      sentence += (f" Past B_crit = {fitted['b_crit']:,.0f}, doubling the batch from {b} to "
                   f"{2 * b} still saves {1 - ratio:.0%} of the steps by the fit")
      for k in kinds:
        per_step = times[(2 * b, k)] / steps[2 * b] / (times[(b, k)] / steps[b])
        change = 1 - ratio * per_step
        sentence += (f"; on {k}, where a step costs {per_step:.2f}x as much, "
                     + (f"{change:.0%} of the seconds" if change >= 0 else
                        f"but {-change:.0%} more seconds"))
      sentence += "."
  for k, r in sorted(largest.items()):
    sentence += f" The largest batch that fits on {k} is {r['max_batch']:,}."
  return sentence


def _plots(workdir, opt, reached, steps, fitted, by_b, times, kinds):
  if not reached:
    return []
  series = {"measured (best trial)": (reached, [steps[b] for b in reached])}
  b0 = reached[0]
  series["perfect scaling"] = (reached, [steps[b0] * b0 / b for b in reached])
  if fitted:
    xs = list(np.geomspace(reached[0], reached[-1], 50))
    series[f"fit, B_crit {fitted['b_crit']:,.0f}"] = (xs, [scaling.steps_at(fitted, b)
                                                            for b in xs])
  out = ["", report_lib.line_plot(workdir, f"critical_batch_steps_{opt}.png", series,
                                  title="Steps to target vs batch size (Shallue plot)",
                                  xlabel="batch size", ylabel="steps", logy=True)]
  examples = {"examples to target": (reached, [steps[b] * b for b in reached])}
  out += ["", report_lib.line_plot(workdir, f"critical_batch_examples_{opt}.png", examples,
                                   title="Examples to target vs batch size",
                                   xlabel="batch size", ylabel="examples", logy=True)]
  if kinds:
    out += ["", report_lib.line_plot(
        workdir, f"critical_batch_seconds_{opt}.png",
        {k: (reached, [times[(b, k)] for b in reached]) for k in kinds},
        title="Seconds to target vs batch size", xlabel="batch size", ylabel="seconds",
        logy=True)]
  lrs = [_geomean([r.get("best_lr") for r in by_b[b]]) for b in reached]
  out += ["", report_lib.line_plot(
      workdir, f"critical_batch_lr_{opt}.png",
      {"best LR": (reached, lrs), "linear rule": (reached, [lrs[0] * b / b0 for b in reached]),
       "sqrt rule": (reached, [lrs[0] * math.sqrt(b / b0) for b in reached])},
      title="Best learning rate vs batch size", xlabel="batch size", ylabel="learning rate",
      logy=True)]
  return out
