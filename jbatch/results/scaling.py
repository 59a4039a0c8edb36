"""Steps to a target against batch size: the fit S(B) = S_min (1 + B_crit / B) (Shallue et
al. 2018; McCandlish et al. 2018, equivalently E(B) = E_min (1 + B / B_crit) in examples,
E_min = S_min * B_crit), its bootstrap interval, and the regions it implies.

The fit is least squares on log steps. For a given B_crit the best log S_min is
the mean of log S - log(1 + B_crit / B), so the search is one-dimensional: a
grid over log B_crit, then a golden-section refinement.
"""

import math

import numpy as np

# Efficiency E_min / E(B) = 1 / (1 + B / B_crit): above 0.8 a doubled batch nearly halves
# the steps (B <= B_crit / 4); below 0.2 it saves almost nothing (B >= 4 B_crit).
PERFECT, NO_GAIN = 0.25, 4.0


def _loss(log_bcrit, log_b, log_s):
  shift = np.log1p(np.exp(log_bcrit - log_b))
  log_smin = np.mean(log_s - shift)
  return float(np.sum((log_s - log_smin - shift) ** 2)), float(log_smin)


def fit(batch_sizes, steps):
  """{s_min, b_crit, e_min, rms_log} from points (B, S); at least two batch sizes."""
  b = np.asarray(batch_sizes, float)
  s = np.asarray(steps, float)
  if len(np.unique(b)) < 2:
    raise ValueError("the fit needs steps to target at two or more batch sizes")
  log_b, log_s = np.log(b), np.log(s)
  lo, hi = log_b.min() - math.log(1e3), log_b.max() + math.log(1e3)
  grid = np.linspace(lo, hi, 400)
  losses = [_loss(g, log_b, log_s)[0] for g in grid]
  i = int(np.argmin(losses))
  a, c = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
  ratio = (math.sqrt(5) - 1) / 2
  for _ in range(60):  # golden section on the bracket around the best grid point
    m1, m2 = c - ratio * (c - a), a + ratio * (c - a)
    if _loss(m1, log_b, log_s)[0] < _loss(m2, log_b, log_s)[0]:
      c = m2
    else:
      a = m1
  log_bcrit = (a + c) / 2
  loss, log_smin = _loss(log_bcrit, log_b, log_s)
  s_min, b_crit = math.exp(log_smin), math.exp(log_bcrit)
  return {"s_min": s_min, "b_crit": b_crit, "e_min": s_min * b_crit,
          "rms_log": math.sqrt(loss / len(b)),
          "at_edge": bool(i == 0 or i == len(grid) - 1)}


def steps_at(fitted, batch_size):
  return fitted["s_min"] * (1 + fitted["b_crit"] / batch_size)


def region(fitted, batch_size):
  """perfect scaling | diminishing returns | no gain, by the fitted B_crit."""
  r = batch_size / fitted["b_crit"]
  return "perfect scaling" if r <= PERFECT else ("no gain" if r >= NO_GAIN else "diminishing")


def best(trials):
  """The trial that reached the target in the fewest steps (ties: fewer examples, then the
  lower LR), or None when none reached it."""
  reached = [t for t in trials if t.get("reached")]
  return min(reached, key=lambda t: (t["steps"], t["examples"], t["lr"])) if reached else None


def tuned_steps(points):
  """Steps to target at one batch size from its points (one per seed): with one seed, its
  best trial's; with several that tried the same learning rates, the fewest over LRs of
  the median over seeds (a trial that never reached it counts as infinitely many), so a
  lucky seed does not set it (the best of many noisy trials is biased low). None: not
  reached."""
  trials = [[t for t in p["trials"]] for p in points]
  grid = lambda ts: sorted((t["lr"], t["momentum"] or 0.0) for t in ts)
  if len(points) < 2 or any(grid(ts) != grid(trials[0]) for ts in trials):
    found = [p.get("steps_to_target") for p in points if p.get("steps_to_target")]
    return float(np.exp(np.mean(np.log(found)))) if found else None
  by_lr = {}
  for ts in trials:
    for t in ts:
      steps = t["steps"] if t.get("reached") else math.inf
      by_lr.setdefault((t["lr"], t["momentum"] or 0.0), []).append(steps)
  best_ = min(float(np.median(v)) for v in by_lr.values())
  return best_ if math.isfinite(best_) else None


def fit_points(points_by_batch, replicates=500, seed=0, level=0.9):
  """The study's fit: {steps: {B: tuned_steps}, fit, interval}. The interval resamples the
  seeds of every batch size (several seeds) or its trials (one seed)."""
  steps = {b: tuned_steps(ps) for b, ps in points_by_batch.items()}
  reached = sorted(b for b, v in steps.items() if v)
  if len(reached) < 2:
    return {"steps": steps, "fit": None, "interval": None}
  fitted = fit(reached, [steps[b] for b in reached])
  if all(len(points_by_batch[b]) >= 2 for b in reached):
    interval = _bootstrap_seeds({b: points_by_batch[b] for b in reached}, replicates, seed,
                                level)
  else:
    interval = bootstrap({b: [t for p in points_by_batch[b] for t in p["trials"]]
                          for b in reached}, replicates, seed, level)
  return {"steps": steps, "fit": fitted, "interval": interval}


def _bootstrap_seeds(points_by_batch, replicates, seed, level):
  rng = np.random.default_rng(seed)
  b_crits, s_mins = [], []
  for _ in range(replicates):
    pts = []
    for b, ps in points_by_batch.items():
      s = tuned_steps([ps[i] for i in rng.integers(0, len(ps), len(ps))])
      if s:
        pts.append((b, s))
    if len(pts) < 2:
      continue
    f = fit(*zip(*pts))
    b_crits.append(f["b_crit"])
    s_mins.append(f["s_min"])
  return _interval(b_crits, s_mins, level, "seeds")


def _interval(b_crits, s_mins, level, resampled):
  if not b_crits:
    return {"b_crit": None, "s_min": None, "replicates": 0, "resampled": resampled}
  q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
  return {"b_crit": tuple(float(v) for v in np.percentile(b_crits, q)),
          "s_min": tuple(float(v) for v in np.percentile(s_mins, q)),
          "replicates": len(b_crits), "level": level, "resampled": resampled}


def bootstrap(trials_by_batch, replicates=500, seed=0, level=0.9):
  """An interval for B_crit and S_min: each replicate resamples, per batch size, the trials
  (of every seed) with replacement and takes the best of the sample.

  trials_by_batch: {B: [trial dicts with reached, steps, examples, lr]}.
  Returns {b_crit: (lo, hi), s_min: (lo, hi), replicates: used}."""
  rng = np.random.default_rng(seed)
  b_crits, s_mins = [], []
  sizes = sorted(trials_by_batch)
  for _ in range(replicates):
    points = []
    for b in sizes:
      trials = trials_by_batch[b]
      sample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
      hit = best(sample)
      if hit is not None:
        points.append((b, hit["steps"]))
    if len({p[0] for p in points}) < 2:
      continue
    f = fit(*zip(*points))
    b_crits.append(f["b_crit"])
    s_mins.append(f["s_min"])
  return _interval(b_crits, s_mins, level, "trials")
