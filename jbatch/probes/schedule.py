"""The probes the dynamics study switches on, and when they run inside a fused epoch.

At a due step the probe sees the state before and after that step. Every value
belongs to the parameters before it (the step count and examples seen a row
carries are theirs): on the fixed probe batch (or the current batch) the
per-example gradient norms (probes/per_example.py), the batch gradient's norm,
|G|^2 and tr(Sigma) from them, and from groups of the batch (one per device on a
mesh of several); the distance of those weights from their initial values; and
the size of the update this step makes from them.
Gradients are taken with BatchNorm in evaluation mode (see per_example).

Due steps: every `every` steps, or whenever the examples seen cross a
multiple of `every_examples` (comparable across batch sizes); always the very
first step, so that "early" is at initialization. With probes.batch=current the
short last batch of an epoch is never probed.
"""

import jax
import jax.numpy as jnp
import ml_collections

from jbatch.errors import UserError
from jbatch.probes import noise_scale, per_example

BATCHES = ("fixed", "current")


def default_config(every_examples):
  """A config's probes section."""
  return ml_collections.ConfigDict(dict(
      every=0,                         # probe every N steps, or
      every_examples=every_examples,   # whenever the examples seen cross a multiple of N
      method="fast",                   # fast | vmap (per-example gradient norms)
      chunk=32,                        # examples per vmap chunk
      batch="fixed",                   # fixed: the first batch_size training examples;
      batch_size=256,                  # current: the step's batch
      groups=8))                       # noise scale from this many groups (one device)


def check(cfg, batch_sizes, n_devices):
  """cfg: the config's probes section; batch_sizes: the resolved training batch sizes."""
  if cfg.every < 0 or cfg.every_examples < 0:
    raise UserError("probes.every and probes.every_examples must be >= 0")
  if not cfg.every and not cfg.every_examples:
    raise UserError("probe interval is 0; set probes.every (steps) or probes.every_examples "
                    "to a positive number")
  if cfg.every and cfg.every_examples:
    raise UserError(f"probes.every={cfg.every} and probes.every_examples={cfg.every_examples} "
                    "both set; give one of them")
  if cfg.method not in per_example.METHODS:
    raise UserError(f"unknown probes.method {cfg.method!r}; choose one of "
                    f"{', '.join(per_example.METHODS)}")
  if cfg.batch not in BATCHES:
    raise UserError(f"unknown probes.batch {cfg.batch!r}; choose one of {', '.join(BATCHES)}")
  sizes = batch_sizes if cfg.batch == "current" else [cfg.batch_size]
  groups = n_devices if n_devices > 1 else cfg.groups
  for b in sizes:
    if b < 2:
      raise UserError(f"a probe batch of {b} has no noise to measure; use probes.batch=fixed "
                      "with probes.batch_size >= 2")
    if cfg.method == "vmap":
      per_example.check_chunk(b, cfg.chunk)
    if groups and (b % groups or b == groups):
      raise UserError(f"probe batch {b} does not split into {groups} groups of 2 or more "
                      "(noise scale from groups); change probes.groups or the batch")


def check_fast_path(cfg, config, workload):
  """probes.method=fast on a user's workload: its model is made only of layers the fast path
  knows (jbatch's Dense, Conv, BatchNorm), found by a shape pass before any work."""
  from flax import nnx
  from jbatch import workloads
  from jbatch.train import point as point_lib
  if cfg.method != "fast" or workloads.is_builtin(workload):
    return
  data = workloads.load_data(config, workload)
  model = point_lib.build_model(config, workload, config.seed, None)
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  try:
    jax.eval_shape(per_example.make(graphdef, workload, "fast", 0), params, state,
                   data.train_x[:2], data.train_y[:2])
  except UserError as e:
    raise UserError(f"workload {workload.source}: {e}") from e


class Probe:

  def __init__(self, engine, cfg, plan):
    """engine: the run's (its model, workload and mesh); plan: the run's train/plan.Plan,
    which says how many examples a step count is."""
    self.graphdef, self.workload, self.cfg, self.plan = (engine.graphdef, engine.workload, cfg,
                                                         plan)
    mesh = engine.mesh
    self.probes_tail = cfg.batch == "fixed"  # a short last batch is probed on the fixed one
    self.norms = per_example.make(self.graphdef, self.workload, cfg.method, cfg.chunk)
    self.mesh = mesh if mesh.devices.size > 1 else None
    self.groups = mesh.devices.size if self.mesh is not None else cfg.groups

  def due(self, step):
    """Whether the step taken from `step` steps done is probed."""
    if self.cfg.every:
      hit = (step + 1) % self.cfg.every == 0
    else:
      n = self.cfg.every_examples
      hit = self.plan.examples_at(step) // n != self.plan.examples_at(step + 1) // n
    return hit | (step == 0)

  def __call__(self, before, after, xb, yb, probe_args):
    init_params, px, py = probe_args
    if self.cfg.batch == "current":
      px, py = xb, yb
    n = px.shape[0]
    out = self.norms(before.params, before.model_state, px, py)
    g2, trace = noise_scale.from_per_example(out["sq_norms"], out["grad_sum"])
    result = {"sq_norms": out["sq_norms"], "g2": g2, "trace": trace,
              "grad_norm": jnp.sqrt(per_example.sq_norm(out["grad_sum"])) / n,
              "distance": distance(before.params, init_params),
              "update": distance(after.params, before.params)}
    if self.groups:
      mean_grad = self._mean_grad(before.model_state)
      if self.mesh is not None:
        small, big = noise_scale.device_norms(mean_grad, self.mesh)(before.params, px, py)
      else:
        small, big = noise_scale.group_norms(mean_grad, before.params, px, py, self.groups)
      result["g2_groups"], result["trace_groups"] = noise_scale.two_batch(
          small, big, n // self.groups, n)
    return result

  def _mean_grad(self, model_state):
    def mean_grad(params, x, y):
      return jax.grad(
          lambda p: per_example.eval_losses(self.graphdef, self.workload, p, model_state, x,
                                            y).mean())(params)
    return mean_grad


def distance(a, b):
  """|a - b| over every parameter."""
  return jnp.sqrt(per_example.sq_norm(jax.tree.map(jnp.subtract, a, b)))
