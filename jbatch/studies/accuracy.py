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

import ml_collections
from flax import nnx

from jbatch import config as config_lib, workloads
from jbatch.errors import UserError
from jbatch.results import sweep
from jbatch.studies import accuracy_report
from jbatch.train import checkpoint, fit as fit_lib, parallel, plan as plan_lib
from jbatch.train import point as point_lib, schedules

NAME = "accuracy"
MULTI_PROCESS = True  # every point trains on one mesh, which may span processes
INITS = ("random", "pretrained")
BASE_LRS = {"sgd": 0.1, "nesterov": 0.1, "adam": 1e-3, "adamw": 1e-3}
# Fields that name a grid axis or do not change a run's result stay out of its hash,
# so that widening the grid or checkpointing more often keeps finished runs.
_NOT_IN_HASH = ("study", "batch_sizes", "rules", "optimizers", "inits", "seeds",
                "checkpoint_every", "learning_rates")


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
  c.eval_train_examples = 10_000  # the fixed train subset evaluated each epoch
  c.checkpoint_every = 1  # epochs; 0: only at the end
  c.device_kind = "auto"  # auto: a GPU when there is one, else the CPU
  return c


def validate(config, workload):
  num_train = workloads.check(config, workload)
  for init in config_lib.names(config.inits):
    if init not in INITS:
      raise UserError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
  if "pretrained" in config_lib.names(config.inits):
    if workload.head is None:
      raise UserError(f"inits=pretrained swaps the output layer, and workload {workload.name} "
                      "names none: set its head, or use inits=random")
    _check_pretrained_meta(config)
  if not config.seeds:
    raise UserError("seeds is empty; give at least one, e.g. --config.seeds=0")
  if config.checkpoint_every < 0 or config.eval_train_examples < 0:
    raise UserError("checkpoint_every and eval_train_examples must be >= 0")
  point_lib.check(config, num_train, config_lib.names(config.optimizers),
                  config_lib.names(config.rules), workload)
  if "target_acc" in config:
    raise UserError("target_acc is now the config's one target: set --config.target.metric="
                    "acc --config.target.value=X --config.target.stop=False (record where it "
                    "is first met and train on)")
  if num_train is not None:
    sizes = config_lib.batch_sizes(config, num_train)
    plan_lib.check_batch_sizes(config, sizes, num_train)
    n = point_lib.mesh(config).devices.size
    for b in sizes:
      config_lib.check_devices(b, n, num_train, config.last_batch)


def _check_pretrained_meta(config):
  if not config.init_checkpoint:
    raise UserError("inits lists 'pretrained' but init_checkpoint is empty; give the run "
                    "folder of a finished pre-training run")
  directory, meta = checkpoint.find_finished(config.init_checkpoint)
  want = point_lib.model_meta(config)
  if meta.get("model") != want["model"] or meta.get("model_config") != want["model_config"]:
    raise UserError(f"checkpoint {directory} holds model {meta.get('model')!r} "
                    f"{meta.get('model_config')}, this config builds {want['model']!r} "
                    f"{want['model_config']}; use the same model settings as the "
                    "pre-training run")


def _hashed_as_before_one_target(d):
  """An accuracy config as it was hashed when the accuracy to record time to was
  `target_acc`, beside a `target` that stopped training: a finished run keeps its id."""
  t, acc = d["target"], 0.0
  if not t.get("stop", True) and t["metric"] == "acc" and t["split"] == "test":
    acc, t = t["value"], {"metric": "", "value": 0.0, "split": "test"}  # the base's then
  return dict(d, target=t, target_acc=acc)


def grid(config, num_train):
  fp = config_lib.fingerprint(config, ignore=_NOT_IN_HASH,
                              legacy=_hashed_as_before_one_target)
  kind = parallel.resolve_kind(config.device_kind)
  points = []
  for b in config_lib.batch_sizes(config, num_train):
    for rule in config_lib.names(config.rules):
      for opt in config_lib.names(config.optimizers):
        for init in config_lib.names(config.inits):
          for seed in config.seeds:
            # The base LR is in the id, not in the config hash: another optimizer's
            # LR changing keeps this run, its own changing reruns it.
            lr = f"{opt}@{point_lib.base_lr(config, opt):g}"
            points.append({"run_id": f"{NAME}/b{b}/{rule}/{lr}/{init}/s{seed}/{fp}",
                           "framework": "jax", "device_kind": kind, "batch_size": b,
                           "rule": rule, "optimizer": opt, "init": init, "seed": seed})
  return points


def run(config, workload, workdir):
  dataset = workloads.load_data(config, workload)
  pretrained = None
  if "pretrained" in config_lib.names(config.inits):
    pretrained = checkpoint.find_finished(config.init_checkpoint)[0]
    _check_pretrained_fits(config, workload, pretrained)  # before any point runs
  points = grid(config, dataset.num_train)
  sweep.run(NAME, config, workdir, points,
            lambda p: _train_point(config, workload, dataset, p, workdir, pretrained))


def _check_pretrained_fits(config, workload, directory):
  model = point_lib.build_model(config, workload, 0, None)
  _, params, model_state = nnx.split(model, nnx.Param, ...)
  checkpoint.load_weights(directory, params, model_state, workload.head)


def _train_point(config, workload, dataset, point, workdir, pretrained):
  p = point_lib.setup(config, workload, dataset, batch_size=point["batch_size"],
                      seed=point["seed"], optimizer=point["optimizer"], rule=point["rule"])
  fresh_head = []
  if point["init"] == "pretrained":
    params, model_state, fresh_head = checkpoint.load_weights(
        pretrained, p.engine.state.params, p.engine.state.model_state, workload.head)
    p.engine.start_from(params, model_state)
  meta = {**point_lib.model_meta(config), "num_classes": dataset.num_classes,
          "run_id": point["run_id"]}
  result = point_lib.train(p, seed=point["seed"], run_id=point["run_id"], workdir=workdir,
                           meta=meta)
  target = fit_lib.check_target(config.target, point_lib.evaluation_splits(config, workload), workload)
  return {**_summary(result["history"], target), **result, **p.fields(),
          "head_reinitialized": fresh_head}


def _summary(history, target):
  """Final and best test accuracy, the generalization gap, and time to the target."""
  if not history:
    return {}
  last = history[-1]
  out = {"final_test_loss": last["test_loss"], "final_train_loss": last["train_loss"],
         "gen_gap_loss": last["test_loss"] - last["train_loss"],
         "samples_per_sec": last["examples"] / last["train_seconds"]}
  if "test_acc" in last:  # a classifier
    best = max(history, key=lambda r: r["test_acc"])
    out.update(final_test_acc=last["test_acc"], final_train_acc=last["train_acc"],
               best_test_acc=best["test_acc"], best_epoch=best["epoch"],
               gen_gap_acc=last["train_acc"] - last["test_acc"])
  else:
    best = min(history, key=lambda r: r["test_loss"])
    out.update(best_test_loss=best["test_loss"], best_epoch=best["epoch"])
  hit = next((r for r in history if target is not None and target.met(r)), None)
  for field, column in (("epochs_to_target", "epoch"), ("steps_to_target", "steps"),
                        ("examples_to_target", "examples"),
                        ("seconds_to_target", "train_seconds")):
    out[field] = hit[column] if hit else None
  return out


def report(records, workdir):
  return accuracy_report.report(records, workdir)
