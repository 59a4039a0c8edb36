"""S1, batch size vs accuracy (seeds/000): test accuracy and generalization gap by batch
size, LR scaling rule, optimizer and starting weights.

Grid: batch sizes x rules x optimizers x inits (random | pretrained) x seeds.
Each point trains for the configured epochs (or examples) with fused epochs,
evaluates train (a fixed subset) and test sets after every epoch, saves an
Orbax checkpoint every `checkpoint_every` epochs, and resumes from it when
killed. The finished checkpoint of one run is the pre-trained start of
another (config.init_checkpoint), with a fresh classifier head when the
number of classes differs.
"""

import json

import ml_collections
import numpy as np
from flax import nnx

from jbatch import config as config_lib
from jbatch.data import registry as data_registry
from jbatch.errors import UserError
from jbatch.models import registry as model_registry
from jbatch.results import report as report_lib, sweep
from jbatch.train import checkpoint, optim, parallel, schedules
from jbatch.train.engine import Engine
from jbatch.train.fit import fit

NAME = "accuracy"
INITS = ("random", "pretrained")
BASE_LRS = {"sgd": 0.1, "nesterov": 0.1, "adam": 1e-3, "adamw": 1e-3}
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
# Fields that name a grid axis or do not change a run's result stay out of its hash,
# so that widening the grid or checkpointing more often keeps finished runs.
_NOT_IN_HASH = ("study", "batch_sizes", "rules", "optimizers", "inits", "seeds",
                "checkpoint_every", "seed", "learning_rates")


def default_config():
  c = config_lib.base()
  c.study = NAME
  c.dataset = "fashion_mnist"
  c.model = "cnn"
  c.cnn.channels = (16, 32)
  c.cnn.hidden = 64
  c.batch_sizes = (8, 256)
  c.epochs = 2
  c.rules = ("linear",)
  c.optimizers = ("sgd",)
  # The base learning rate of each optimizer at schedule.base_batch_size.
  c.learning_rates = ml_collections.ConfigDict(BASE_LRS)
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.schedule = schedules.default_config(decay="cosine")
  c.inits = ("random",)
  c.init_checkpoint = ""  # a run folder of a finished jbatch run, for inits=pretrained
  c.seeds = (0,)
  c.target_acc = 0.0  # > 0: record epochs, steps, examples and seconds to reach it
  c.eval_train_examples = 10_000  # the fixed train subset evaluated each epoch
  c.checkpoint_every = 1  # epochs; 0: only at the end
  c.device_kind = "auto"  # auto: a GPU when there is one, else the CPU
  return c


def validate(config):
  num_train = data_registry.check(config)
  model_registry.check(config)
  for name in config_lib.names(config.optimizers):
    optim.check(optimizer_config(config, name))
  for init in config_lib.names(config.inits):
    if init not in INITS:
      raise UserError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
  if "pretrained" in config_lib.names(config.inits):
    _check_pretrained_meta(config)
  if not config.seeds:
    raise UserError("seeds is empty; give at least one, e.g. --config.seeds=0")
  if config.checkpoint_every < 0 or config.eval_train_examples < 0:
    raise UserError("checkpoint_every and eval_train_examples must be >= 0")
  parallel.check_kind(config.device_kind)
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train)
    config_lib.validate_common(config, sizes, num_train)
    kind = parallel.resolve_kind(config.device_kind)
    n = parallel.make_mesh(kind, config.num_devices).devices.size
    for b in sizes:
      config_lib.check_devices(b, n, num_train, config.last_batch)
  schedules.check(config.schedule, config_lib.names(config.rules),
                  config.epochs if not config.examples else float("inf"))


def optimizer_config(config, name):
  """config.optimizer with this grid optimizer's name and base learning rate."""
  return ml_collections.ConfigDict(dict(config.optimizer.to_dict(), name=name,
                                        learning_rate=base_lr(config, name)))


def base_lr(config, name):
  if name not in config.learning_rates:
    raise UserError(f"no base learning rate for optimizer {name!r}; set "
                    f"--config.learning_rates.{name}=...")
  return config.learning_rates[name]


def _check_pretrained_meta(config):
  if not config.init_checkpoint:
    raise UserError("inits lists 'pretrained' but init_checkpoint is empty; give the run "
                    "folder of a finished pre-training run")
  directory, meta = checkpoint.find_finished(config.init_checkpoint)
  model_cfg = config.get(config.model).to_dict()
  if meta.get("model") != config.model or meta.get("model_config") != _jsonish(model_cfg):
    raise UserError(f"checkpoint {directory} holds model {meta.get('model')!r} "
                    f"{meta.get('model_config')}, this config builds {config.model!r} {model_cfg}; "
                    "use the same model settings as the pre-training run")


def _jsonish(d):
  """What a dict looks like after a JSON round trip (tuples become lists)."""
  return json.loads(json.dumps(d))


def grid(config, num_train):
  fp = config_lib.fingerprint(config, ignore=_NOT_IN_HASH)
  kind = parallel.resolve_kind(config.device_kind)
  points = []
  for b in config_lib.batch_sizes(config, num_train):
    for rule in config_lib.names(config.rules):
      for opt in config_lib.names(config.optimizers):
        for init in config_lib.names(config.inits):
          for seed in config.seeds:
            # The base LR is in the id, not in the config hash: another optimizer's
            # LR changing keeps this run, its own changing reruns it.
            lr = f"{opt}@{base_lr(config, opt):g}"
            points.append({"run_id": f"{NAME}/b{b}/{rule}/{lr}/{init}/s{seed}/{fp}",
                           "framework": "jax", "device_kind": kind, "batch_size": b,
                           "rule": rule, "optimizer": opt, "init": init, "seed": seed})
  return points


def run(config, workdir):
  dataset = data_registry.load(config)
  pretrained = None
  if "pretrained" in config_lib.names(config.inits):
    pretrained = checkpoint.find_finished(config.init_checkpoint)[0]
    _check_pretrained_fits(config, dataset, pretrained)  # before any point runs
  points = grid(config, dataset.num_train)
  sweep.run(NAME, config, workdir, points,
            lambda p: _train_point(config, dataset, p, workdir, pretrained))


def _check_pretrained_fits(config, dataset, directory):
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, 0)
  _, params, model_state = nnx.split(model, nnx.Param, ...)
  checkpoint.load_weights(directory, params, model_state, model_registry.HEADS[config.model])


def _train_point(config, dataset, point, workdir, pretrained):
  b, n = point["batch_size"], dataset.num_train
  duration = config_lib.duration(config, b, n)
  lr_base = base_lr(config, point["optimizer"])
  lr, peak = schedules.make(config.schedule, point["rule"], lr_base, b,
                            duration.steps_per_epoch, duration.total_steps)
  opt_cfg = optimizer_config(config, point["optimizer"])
  mesh = parallel.make_mesh(parallel.resolve_kind(config.device_kind), config.num_devices)
  platform = mesh.devices.flat[0].platform
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, point["seed"],
                               platform)
  engine = Engine(model, optim.make(opt_cfg, learning_rate=lr), mesh)
  fresh_head = []
  if point["init"] == "pretrained":
    params, model_state, fresh_head = checkpoint.load_weights(
        pretrained, engine.state.params, engine.state.model_state,
        model_registry.HEADS[config.model])
    engine.start_from(params, model_state)

  k = min(config.eval_train_examples or n, n)
  train = engine.put(dataset.train_x, dataset.train_y)
  evals = {"train": (train[0][:k], train[1][:k]),
           "test": engine.put(dataset.test_x, dataset.test_y)}
  ckpts = checkpoint.RunCheckpoints(checkpoint.run_dir(workdir, point["run_id"]),
                                    config.checkpoint_every)
  meta = {"model": config.model, "model_config": _jsonish(config.get(config.model).to_dict()),
          "dataset": config.dataset, "num_classes": dataset.num_classes,
          "run_id": point["run_id"]}
  result = fit(engine, train, evals, duration, batch_size=b, seed=point["seed"],
               last_batch=config.last_batch, eval_batch_size=config.eval_batch_size,
               checkpoints=ckpts, lr_at=lr, label=point["run_id"].rsplit("/", 1)[0], meta=meta)
  return {**_summary(result["history"], config.target_acc), **result,
          "lr_peak": peak, "base_lr": lr_base, "num_train": n, "eval_train_examples": k,
          "epochs_planned": duration.epochs, "steps_per_epoch": duration.steps_per_epoch,
          "total_steps": duration.total_steps, "head_reinitialized": fresh_head,
          "checkpoint_dir": ckpts.directory, "device_name": engine.device.device_kind,
          "n_devices": engine.n_devices, **model_registry.conv_fields(config, platform)}


def _summary(history, target):
  """Final and best test accuracy, the generalization gap, and time to the target."""
  if not history:
    return {}
  last = history[-1]
  best = max(history, key=lambda r: r["test_acc"])
  out = {"final_test_acc": last["test_acc"], "final_test_loss": last["test_loss"],
         "final_train_acc": last["train_acc"], "final_train_loss": last["train_loss"],
         "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
         "gen_gap_acc": last["train_acc"] - last["test_acc"],
         "gen_gap_loss": last["test_loss"] - last["train_loss"],
         "samples_per_sec": last["examples"] / last["train_seconds"]}
  hit = next((r for r in history if target and r["test_acc"] >= target), None)
  for field, column in (("epochs_to_target", "epoch"), ("steps_to_target", "steps"),
                        ("examples_to_target", "examples"),
                        ("seconds_to_target", "train_seconds")):
    out[field] = hit[column] if hit else None
  return out


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

  out += ["", "### Final test accuracy (best in brackets, gap after the slash)", ""]
  rows = []
  for g in groups:
    row = [" / ".join(g)]
    for b in sizes:
      if (*g, b) not in cells:
        row.append(None)
        continue
      status = {r["status"] for r in cells[(*g, b)]}
      row.append("diverged" if status == {"diverged"} else
                 f"{cell(g, b, 'final_test_acc'):.4f} ({cell(g, b, 'best_test_acc'):.4f}) "
                 f"/ {cell(g, b, 'gen_gap_acc'):+.4f}")
    rows.append(row)
  out.append(report_lib.table(["rule / optimizer / init"] + [f"batch {b}" for b in sizes], rows))

  inits = sorted({g[2] for g in groups})
  out += ["", "### The seeds/000 table: test accuracy by batch size and starting weights", ""]
  for rule, opt in sorted({g[:2] for g in groups}):
    out.append(f"{rule} scaling, {opt}:\n")
    out.append(report_lib.table(["start"] + [f"batch {b}" for b in sizes],
                                [[i] + [cell((rule, opt, i), b, "final_test_acc") for b in sizes]
                                 for i in inits]))
    out.append("")

  out += ["### Time per epoch and time to target", ""]
  target = c.get("target_acc") or None
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
                            [cell(g, b, "final_test_acc") for b in sizes if (*g, b) in cells])
            for g in groups}
  out += ["", report_lib.line_plot(workdir, "accuracy_vs_batch.png", series,
                                   title="Final test accuracy vs batch size",
                                   xlabel="batch size", ylabel="test accuracy")]
  curves = {}
  for r in sorted(done, key=lambda r: (r["batch_size"], r["rule"], r["optimizer"], r["init"])):
    if r["seed"] == first["seed"]:
      label = f"b{r['batch_size']} {r['rule']} {r['optimizer']} {r['init']}"
      curves[label] = ([h["epoch"] for h in r["history"]], [h["test_acc"] for h in r["history"]])
  out += ["", report_lib.line_plot(workdir, "accuracy_curves.png", curves,
                                   title="Test accuracy by epoch", xlabel="epoch",
                                   ylabel="test accuracy", logx=False)]
  if target:
    reach = {" / ".join(g): ([b for b in sizes if cell(g, b, "seconds_to_target")],
                             [cell(g, b, "seconds_to_target") for b in sizes
                              if cell(g, b, "seconds_to_target")]) for g in groups}
    out += ["", report_lib.line_plot(workdir, "accuracy_time_to_target.png", reach,
                                     title=f"Training seconds to {target} test accuracy",
                                     xlabel="batch size", ylabel="seconds", logy=True)]
  out += report_lib.unfinished(records, ("ok", "diverged"))
  return "\n".join(out)
