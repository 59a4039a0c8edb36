"""The config every study reads: defaults, the batch sizes it names, the config hash
(train/plan.py turns its length into steps and checks it).

A study's config file (experiments/*.py) starts from `base()` and changes what
it needs. Validation runs before a folder is made or a dataset loaded, and
every problem is a UserError whose one line says what to change.
"""

import hashlib
import json
import os

import ml_collections

from jbatch.errors import UserError


def base():
  c = ml_collections.ConfigDict()
  c.study = ""
  c.seed = 0
  c.dataset = "synthetic"
  c.data_dir = ""  # empty: $JBATCH_DATA_DIR
  c.synthetic = ml_collections.ConfigDict(dict(
      num_train=135_844, num_test=10_000, input_shape=(32,), num_classes=10))
  c.train_subset = 0  # N > 0: train on the first N training examples only
  # A user's workload instead of model + dataset: FILE.py:NAME or pkg.module:NAME, where
  # NAME(workload_config) returns a jbatch.workloads.Workload (docs/workloads.md).
  c.workload = ""
  c.workload_config = ml_collections.ConfigDict()
  c.model = "mlp"
  # Convolutions: auto picks per platform (im2col on CPU, XLA's elsewhere; models/conv.py).
  c.conv_impl = "auto"
  # bfloat16: matrix products and convolutions in bfloat16, parameters, optimizer state,
  # BatchNorm and the loss in float32 (models/registry.py).
  c.precision = "float32"
  c.mlp = ml_collections.ConfigDict(dict(depth=6, width=64, batchnorm=True))
  c.cnn = ml_collections.ConfigDict(dict(channels=(32, 64), hidden=128, batchnorm=False))
  c.mobilenet_v2 = ml_collections.ConfigDict(dict(variant="cifar", width=1.0))
  c.resnet18 = ml_collections.ConfigDict(dict(variant="cifar"))
  c.vgg = ml_collections.ConfigDict(dict(depth=16, batchnorm=False, width=1.0))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=0.0))
  c.batch_sizes = (100, 1000)
  # The training length: epochs, or examples or steps when > 0 (one of the two).
  c.epochs = 1
  c.examples = 0
  c.steps = 0
  # Evaluation at every epoch end, and also every N steps or every N examples seen.
  c.eval_every = 0
  c.eval_every_examples = 0
  # The last N training examples held out as a validation split (a target can use it).
  c.validation_examples = 0
  # The first evaluation that meets it: metric acc | error | loss (or a workload's own) on
  # split train | test | validation; metric "" for none. stop: training stops there;
  # False: the run goes its whole length and records where the target was first met.
  c.target = ml_collections.ConfigDict(dict(metric="", value=0.0, split="test", stop=True))
  # PyTorch's DataLoader keeps a last short batch by default ("partial");
  # "drop" skips it so that every step has the same shape.
  c.last_batch = "partial"
  c.num_devices = 0  # 0: every local device of the kind in use
  c.eval_batch_size = 1000
  return c


def data_dir(config):
  return config.data_dir or os.environ.get("JBATCH_DATA_DIR", "")


def batch_sizes(config, num_train):
  """config.batch_sizes with the word 'full' (the whole training set) resolved."""
  sizes = (num_train if b == "full" else b for b in config.batch_sizes)
  return tuple(dict.fromkeys(sizes))  # each once, in order


def check_devices(batch_size, n_devices, num_train, last_batch):
  if batch_size % n_devices:
    raise UserError(f"batch size {batch_size} is not divisible by the {n_devices} devices; "
                    f"use a multiple of {n_devices} or set --config.num_devices")
  tail = num_train % batch_size
  if last_batch == "partial" and tail % n_devices:
    raise UserError(f"the last partial batch ({tail} of {num_train} examples at batch "
                    f"{batch_size}) does not split over {n_devices} devices; "
                    "set --config.last_batch=drop")


# Fields added after records were written, with the default they came with: hashed only
# where they differ from it, so that the runs made before keep their ids.
ADDED = (("workload",), ""), (("workload_config",), {}), (("target", "stop"), True)


def fingerprint(config, ignore=("batch_sizes", "study"), legacy=None):
  """A short hash of what a run depends on, so resumes skip only truly finished work.
  A user workload's code and settings are in it (workloads.bind), not the path it is at.
  legacy(dict) -> dict: a study's config as it was hashed before a field was renamed."""
  d = {k: v for k, v in config.to_dict().items() if k not in ignore}
  if d.get("workload_hash"):  # the code and settings, wherever the file lives
    d.pop("workload")
  if legacy is not None:
    d = legacy(d)
  for path, default in ADDED:
    node = d
    for k in path[:-1]:
      node = node.get(k) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get(path[-1], default) == default:
      node.pop(path[-1], None)
  return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def names(value):
  """A tuple of names from a config field; `--config.rules=none,linear` on the command line
  arrives as one string 'none,linear' when the default has one element."""
  if isinstance(value, str):
    value = (value,)
  out = [n.strip() for v in value for n in str(v).split(",") if n.strip()]
  return tuple(dict.fromkeys(out))  # each once, in order


def from_file(here, name):
  """get_config() of the config file `name`.py beside `here` (a config file's __file__):
  config files build on each other without the experiments folder being importable."""
  import importlib.util
  path = os.path.join(os.path.dirname(os.path.abspath(here)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"jbatch_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
