"""report.md and its PNG figures, made from results.jsonl alone.

Each study module supplies `report(records, workdir) -> markdown`; this file
holds what they share: markdown tables, line plots, and writing the file.
matplotlib is optional: without it the report has its tables and says why
the figures are missing.
"""

import os

from jbatch.results import store


def fmt(value, digits=3):
  if value is None:
    return "-"
  if isinstance(value, float):
    if value != value:
      return "nan"
    if abs(value) >= 1e4 or (value.is_integer() and abs(value) >= 1000):
      return f"{value:,.0f}"
    return f"{value:,.{digits}g}"
  return str(value)


def table(headers, rows):
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def unfinished(records, finished=("ok",)):
  """Markdown lines naming the points whose status is not in `finished` (empty if none)."""
  bad = [r for r in records if r["status"] not in finished]
  if not bad:
    return []
  return ["", "Points that did not finish: " + "; ".join(
      f"{r['run_id']} {r['status']} {r.get('error', '')[:80]}" for r in bad)]


def line_plot(workdir, filename, series, *, title, xlabel, ylabel, logx=True, logy=False):
  """series: {label: (xs, ys)}. Returns a markdown image link, or a note without matplotlib."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return f"_(figure {filename} skipped: matplotlib is not installed; pip install 'jbatch[plots]')_"
  series = {k: v for k, v in series.items() if len(v[0])}
  if not series:
    return f"_(figure {filename} skipped: nothing to plot yet)_"
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for label, (xs, ys) in series.items():
    ax.plot(xs, ys, marker="o", label=label)
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
  if logx:
    ax.set_xscale("log")
  if logy:
    ax.set_yscale("log")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  _save(fig, workdir, filename)
  plt.close(fig)
  return f"![{title}]({filename})"


def write(workdir, studies):
  """Writes workdir/report.md from the records of every study found there."""
  records = store.read(workdir)
  sections = ["# jbatch report", ""]
  if not records:
    sections.append("No records yet.")
  by_study = {}
  for r in records:
    by_study.setdefault(r["study"], []).append(r)
  for name, recs in by_study.items():
    module = studies.get(name)
    if module is None:
      continue
    sections += [module.report(latest(recs), workdir), ""]
  path = os.path.join(workdir, "report.md")
  tmp = f"{path}.tmp{os.getpid()}"  # workers of one sweep may write it at once
  with open(tmp, "w") as f:
    f.write("\n".join(sections))
  os.replace(tmp, path)
  return path


def _save(fig, workdir, filename):
  """A figure written whole or not at all (workers of one sweep may write it at once)."""
  path = os.path.join(workdir, filename)
  tmp = f"{path}.tmp{os.getpid()}{os.path.splitext(filename)[1]}"
  fig.savefig(tmp, dpi=110)
  os.replace(tmp, path)


def latest(records):
  """The newest record of each run_id (a rerun after an error supersedes it)."""
  out = {}
  for r in records:
    out[r["run_id"]] = r
  return list(out.values())


def histograms(workdir, filename, panels, *, title, xlabel):
  """panels: {panel title: {label: values}}, one histogram panel each, side by side."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return f"_(figure {filename} skipped: matplotlib is not installed; pip install 'jbatch[plots]')_"
  panels = {k: {label: v for label, v in p.items() if len(v)} for k, p in panels.items()}
  panels = {k: p for k, p in panels.items() if p}
  if not panels:
    return f"_(figure {filename} skipped: nothing to plot yet)_"
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
  for ax, (name, series) in zip(axes[0], panels.items()):
    for label, values in series.items():
      ax.hist(values, bins=30, alpha=0.5, label=label, density=True)
    ax.set(title=name, xlabel=xlabel)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  _save(fig, workdir, filename)
  plt.close(fig)
  return f"![{title}]({filename})"
