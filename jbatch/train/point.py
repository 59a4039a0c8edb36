"""Setup of one training point and training it to a result: what every study stands on.

`setup` builds, from the config, the workload (workloads/) with its loaded data,
and the point (batch size, optimizer, LR rule, seed), the mesh, the platform,
the workload's model, the plan (train/plan.py), the
optimizer with its schedule, and the engine; `Point.fields()` are the record
fields every study shares. `train` puts the data on the mesh, evaluates the
train subset, the test set and the validation split at every evaluation
point, stops at the config's target, checkpoints and resumes (train/fit.py).
"""

import dataclasses
import json

import ml_collections

from jbatch.errors import UserError
from jbatch.models import registry as model_registry
from jbatch.train import (checkpoint, fit as fit_lib, loop, optim, parallel, plan as plan_lib,
                          schedules)
from jbatch.train.engine import Engine


def base_lr(config, name):
  """The base learning rate of optimizer `name` at schedule.base_batch_size."""
  if name not in config.learning_rates:
    raise UserError(f"no base learning rate for optimizer {name!r}; set "
                    f"--config.learning_rates.{name}=...")
  return config.learning_rates[name]


def optimizer_config(config, name, learning_rate=None):
  """config.optimizer with this grid optimizer's name and base learning rate."""
  lr = base_lr(config, name) if learning_rate is None else learning_rate
  return ml_collections.ConfigDict(dict(config.optimizer.to_dict(), name=name,
                                        learning_rate=lr))


def check(config, num_train, optimizers, rules, workload=None):
  """What every study that trains to a result checks before any work: the optimizers and
  their base LRs, the length, the evaluation points, the target, the schedule."""
  for name in optimizers:  # those with a base LR in config.learning_rates
    optim.check(optimizer_config(config, name))
  if config.eval_batch_size <= 0:
    raise UserError(f"eval_batch_size={config.eval_batch_size}; give a positive batch size")
  epochs = plan_lib.check_length(config, num_train)
  splits = evaluation_splits(config, workload)
  if config.target.split == "validation" and "validation" not in splits:
    raise UserError("target.split=validation needs a validation split; set "
                    "--config.validation_examples=N (held out of the training set)")
  fit_lib.check_target(config.target, splits, workload)
  schedules.check(config.schedule, rules, float("inf") if epochs is None else epochs)
  parallel.check_kind(config.device_kind)


def evaluation_splits(config, workload=None):
  """train and test, and validation where there is one: validation_examples held out, or a
  user workload's own validation split."""
  from jbatch import workloads
  held = bool(config.get("validation_examples")) or (
      workload is not None and not workloads.is_builtin(workload)
      and workloads.load_data(config, workload).val_x is not None)
  return ("train", "test") + (("validation",) if held else ())


def mesh(config, device_kind=None):
  return parallel.make_mesh(parallel.resolve_kind(device_kind or config.device_kind),
                            config.num_devices)


@dataclasses.dataclass
class Point:
  engine: Engine
  plan: plan_lib.Plan
  lr: object        # step -> learning rate (optax schedule), or a float
  lr_peak: float
  base_lr: float
  platform: str
  config: ml_collections.ConfigDict
  workload: object
  dataset: object
  _train: tuple = None

  def train_arrays(self):
    """The training set on the mesh, put there once."""
    if self._train is None:
      self._train = self.engine.put(self.dataset.train_x, self.dataset.train_y)
    return self._train

  def fields(self):
    """Record fields every study shares."""
    from jbatch import workloads
    p = self.plan
    return {**workloads.record_fields(self.workload),
            "device_name": self.engine.device.device_kind, "n_devices": self.engine.n_devices,
            "lr_peak": self.lr_peak, "base_lr": self.base_lr, "num_train": p.num_train,
            "steps_per_epoch": p.steps_per_epoch, "total_steps": p.total_steps,
            "epochs_planned": p.epochs,
            **conv_fields(self.config, self.workload, self.platform)}


def conv_fields(config, workload, platform):
  """A built-in model's convolution formulation and why (none for a user's model)."""
  return model_registry.conv_fields(config, platform) if workload.source == "builtin" else {}


def setup(config, workload, dataset, *, batch_size, seed, optimizer=None, rule="none", learning_rate=None,
          micro_batches=1, device_kind=None, plan=None, inject=False):
  """A Point. optimizer: a name from config.learning_rates, its LR following the config's
  schedule and `rule`; None: config.optimizer as it is, at a constant LR. learning_rate
  overrides the base LR (an LR search); inject keeps a constant LR (and SGD's momentum)
  in the optimizer state (optim.make), so that trials share their compiles."""
  mesh_ = mesh(config, device_kind)
  platform = mesh_.devices.flat[0].platform
  plan = plan or plan_lib.from_config(config, batch_size, dataset.num_train)
  if optimizer is None:
    opt_cfg = config.optimizer
    lr = lr_peak = lr_base = opt_cfg.learning_rate
  else:
    lr_base = base_lr(config, optimizer) if learning_rate is None else learning_rate
    opt_cfg = optimizer_config(config, optimizer, lr_base)
    lr, lr_peak = schedules.make(config.schedule, rule, lr_base, plan)
    if inject:
      lr = lr_peak
  model = build_model(config, workload, seed, platform)
  engine = Engine(model, optim.make(opt_cfg, learning_rate=lr, inject=inject), mesh_,
                  micro_batches, workload)
  return Point(engine, plan, lr, lr_peak, lr_base, platform, config, workload, dataset)


def build_model(config, workload, seed, platform):
  """The workload's model in the config's precision (models/registry.set_precision)."""
  return model_registry.set_precision(workload.build_model(seed, platform),
                                      config.get("precision", "float32"))


def evaluation_sets(point, splits=("train", "test", "validation")):
  """{name: (x, y)} on the mesh, of `splits` those there are: the first
  eval_train_examples of the training set, the test set, the validation split."""
  config, d = point.config, point.dataset
  x, y = point.train_arrays()
  k = min(config.get("eval_train_examples", 0) or d.num_train, d.num_train)
  sets = {"train": lambda: (x[:k], y[:k]), "test": lambda: point.engine.put(d.test_x, d.test_y)}
  if d.val_x is not None:
    sets["validation"] = lambda: point.engine.put(d.val_x, d.val_y)
  return {name: sets[name]() for name in splits if name in sets}


def evaluate(point, split):
  """{loss, acc} of the point's current weights on one evaluation set."""
  ex, ey = evaluation_sets(point, (split,))[split]
  engine = point.engine
  return loop.summarize(engine.evaluator(ex.shape[0], point.config.eval_batch_size)(
      engine.weights(), ex, ey))


def train(point, *, seed, run_id=None, workdir=None, target=True,
          splits=("train", "test", "validation"), **fit_kwargs):
  """Trains `point` to its result (train/fit.py); checkpointed under workdir when given.

  target: True follows config.target; False or a fit.Target overrides it. splits:
  the sets evaluated at every evaluation point. Returns fit's result with
  `eval_train_examples` and `checkpoint_dir` added.
  """
  config, evals = point.config, evaluation_sets(point, splits)
  if target is True:
    target = fit_lib.check_target(config.target, tuple(evals), point.workload)
  ckpts = None
  if workdir is not None:
    ckpts = checkpoint.RunCheckpoints(checkpoint.run_dir(workdir, run_id),
                                      config.checkpoint_every)
  fit_kwargs.setdefault("label", (run_id or "").rsplit("/", 1)[0])
  result = fit_lib.fit(point.engine, point.train_arrays(), evals, point.plan, seed=seed,
                       eval_batch_size=config.eval_batch_size, checkpoints=ckpts,
                       lr_at=point.lr if callable(point.lr) else None, target=target or None,
                       **fit_kwargs)
  if "train" in evals:
    result["eval_train_examples"] = evals["train"][0].shape[0]
  if ckpts is not None:
    result["checkpoint_dir"] = ckpts.directory
  return result


def model_meta(config):
  """What a checkpoint says of its model, so that a pre-trained start can be checked."""
  if config.get("workload"):  # a user's: its origin and settings
    return {"model": config.workload,
            "model_config": json.loads(json.dumps(config.workload_config.to_dict())),
            "dataset": config.workload}
  return {"model": config.model,
          "model_config": json.loads(json.dumps(config.get(config.model).to_dict())),
          "dataset": config.dataset}


def largest_batch(config, workload, dataset, device_kind, memory_budget=0):
  """The record of bench/max_batch.search for the workload's model on one device of a kind."""
  from jbatch.bench import max_batch
  cfg = config.copy_and_resolve_references()
  cfg.num_devices = 1
  p = setup(cfg, workload, dataset, batch_size=1, seed=config.seed, device_kind=device_kind)
  return max_batch.search(p.engine, max_batch.example_spec(dataset), memory_budget)
