"""The accuracy study's report: accuracy tables by batch size, rule, optimizer and start,
time per epoch and to target, the published figures, and plots."""

import numpy as np

from jbatch.results import report as report_lib

PUBLISHED = [
    "MobileNetV2 from scratch on CIFAR-10: about 94.4% (SGD 0.1, batch 128, cosine, 200 "
    "epochs; kuangliu/pytorch-cifar).",
    "Keskar et al. 2016 (Adam, batch 256 vs 10% of the data): MNIST F1 98.03% vs 97.81%; "
    "CIFAR-10 C1 80.04% vs 77.26%, C2 89.24% vs 87.26%.",
    "Goyal et al. 2017 (ImageNet ResNet-50, linear scaling + 5-epoch warmup): top-1 error "
    "23.60% at 256, 23.74% at 8k, 24.79% at 16k, 27.55% at 32k; 24.84% at 8k without warmup.",
    "Kevin Shen 2018 (MNIST): batch 64 about 98%, batch 1024 about 96%, batch 1024 with a "
    "larger LR about 98%.",
]


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def report(records, workdir):
  out = ["## Accuracy: batch size vs accuracy and generalization (S1, seeds/000)", ""]
  done = [r for r in records if r["status"] in ("ok", "diverged")]
  if not done:
    return "\n".join(out + ["No finished points yet."])
  first = done[0]
  c = first["config"]
  length = f"{c['examples']:,} examples" if c.get("examples") else f"{c['epochs']} epochs"
  out.append(
      f"Model `{first['model']}` {c.get(first['model'], '')}, dataset `{first['dataset']}` "
      f"({first['num_train']:,} training examples; train accuracy on the first "
      f"{first['eval_train_examples']:,}), {length}, schedule {c['schedule']['decay']} with "
      f"{c['schedule']['warmup_epochs']} warmup epochs, base LRs {c['learning_rates']} at batch "
      f"{c['schedule']['base_batch_size']}, momentum {c['optimizer']['momentum']}, weight decay "
      f"{c['optimizer']['weight_decay']}, last batch `{first['last_batch']}`; device "
      f"{first['device_kind']}={first['device_name']} x{first['n_devices']}. Accuracies are the "
      "mean over seeds; gap = train accuracy - test accuracy at the end.")
  sizes = sorted({r["batch_size"] for r in done})
  groups = sorted({(r["rule"], r["optimizer"], r["init"]) for r in done})
  cells = {}
  for r in done:
    cells.setdefault((r["rule"], r["optimizer"], r["init"], r["batch_size"]), []).append(r)
  cell = lambda g, b, f: _mean([r.get(f) for r in cells.get((*g, b), [])])
  # a classifier's accuracy; the loss of a workload without one (e.g. a regression)
  m = "acc" if any(r.get("final_test_acc") is not None for r in done) else "loss"
  what = {"acc": "accuracy", "loss": "loss"}[m]

  out += ["", f"### Final test {what} (mean over seeds, ± their standard deviation; best in "
          "brackets, gap after the slash)", ""]
  rows = []
  for g in groups:
    row = [" / ".join(g)]
    for b in sizes:
      if (*g, b) not in cells:
        row.append(None)
        continue
      status = {r["status"] for r in cells[(*g, b)]}
      finals = [r[f"final_test_{m}"] for r in cells[(*g, b)]
                if r.get(f"final_test_{m}") is not None]
      spread = (f" ±{np.std(finals, ddof=1):.4f} over {len(finals)} seeds" if len(finals) > 1
                else "")
      row.append("diverged" if status == {"diverged"} else
                 f"{cell(g, b, f'final_test_{m}'):.4f}{spread} "
                 f"({cell(g, b, f'best_test_{m}'):.4f}) / {cell(g, b, f'gen_gap_{m}'):+.4f}")
    rows.append(row)
  out.append(report_lib.table(["rule / optimizer / init"] + [f"batch {b}" for b in sizes], rows))

  inits = sorted({g[2] for g in groups})
  out += ["", f"### The seeds/000 table: test {what} by batch size and starting weights", ""]
  for rule, opt in sorted({g[:2] for g in groups}):
    out.append(f"{rule} scaling, {opt}:\n")
    out.append(report_lib.table(["start"] + [f"batch {b}" for b in sizes],
                                [[i] + [cell((rule, opt, i), b, f"final_test_{m}") for b in sizes]
                                 for i in inits]))
    out.append("")

  out += ["### Time per epoch and time to target", ""]
  t = c.get("target", {})  # records of before the one target held target_acc
  target = c.get("target_acc") or (f"{t['split']} {t['metric']} {t['value']}"
                                    if t.get("metric") else None)
  out.append(report_lib.table(
      ["rule / optimizer / init", "batch", "lr peak", "s/epoch", "samples/s", "compile s",
       f"epochs to {target}", "examples to target", "s to target", "status"],
      [[" / ".join(g), b, cell(g, b, "lr_peak"),
        _mean([r["train_seconds"] / max(len(r["history"]), 1) for r in cells[(*g, b)]]),
        cell(g, b, "samples_per_sec"), cell(g, b, "compile_s"), cell(g, b, "epochs_to_target"),
        cell(g, b, "examples_to_target"), cell(g, b, "seconds_to_target"),
        ",".join(sorted({r["status"] + (f"@{r['diverged_epoch']}" if r.get("diverged_epoch")
                                        else "") for r in cells[(*g, b)]}))]
       for g in groups for b in sizes if (*g, b) in cells]))
  out += ["", "Published figures to compare with:", ""] + [f"- {p}" for p in PUBLISHED]

  series = {" / ".join(g): ([b for b in sizes if (*g, b) in cells],
                            [cell(g, b, f"final_test_{m}") for b in sizes if (*g, b) in cells])
            for g in groups}
  out += ["", report_lib.line_plot(workdir, "accuracy_vs_batch.png", series,
                                   title=f"Final test {what} vs batch size",
                                   xlabel="batch size", ylabel=f"test {what}")]
  curves = {}
  several = len({r["seed"] for r in done}) > 1
  for r in sorted(done, key=lambda r: (r["batch_size"], r["rule"], r["optimizer"], r["init"],
                                       r["seed"])):
    label = f"b{r['batch_size']} {r['rule']} {r['optimizer']} {r['init']}"
    label += f" seed {r['seed']}" if several else ""
    curves[label] = ([h["epoch"] for h in r["history"]], [h[f"test_{m}"] for h in r["history"]])
  out += ["", report_lib.line_plot(workdir, "accuracy_curves.png", curves,
                                   title=f"Test {what} by epoch", xlabel="epoch",
                                   ylabel=f"test {what}", logx=False)]
  if target:
    reach = {" / ".join(g): ([b for b in sizes if cell(g, b, "seconds_to_target")],
                             [cell(g, b, "seconds_to_target") for b in sizes
                              if cell(g, b, "seconds_to_target")]) for g in groups}
    out += ["", report_lib.line_plot(workdir, "accuracy_time_to_target.png", reach,
                                     title=f"Training seconds to {target} test accuracy",
                                     xlabel="batch size", ylabel="seconds", logy=True)]
  out += report_lib.unfinished(records, ("ok", "diverged"))
  return "\n".join(out)
