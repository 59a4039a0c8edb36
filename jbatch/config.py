"""The config every study reads: defaults, validation, and durations in steps.

A study's config file (experiments/*.py) starts from `base()` and changes what
it needs. Validation runs before a folder is made or a dataset loaded, and
every problem is a UserError whose one line says what to change.
"""

import hashlib
import json
import os

import ml_collections

from jbatch.errors import UserError

LAST_BATCH_MODES = ("drop", "partial")


def base():
  c = ml_collections.ConfigDict()
  c.study = ""
  c.seed = 0
  c.dataset = "synthetic"
  c.data_dir = ""  # empty: $JBATCH_DATA_DIR
  c.synthetic = ml_collections.ConfigDict(dict(
      num_train=135_844, num_test=10_000, input_shape=(32,), num_classes=10))
  c.model = "mlp"
  c.mlp = ml_collections.ConfigDict(dict(depth=6, width=64, batchnorm=True))
  c.cnn = ml_collections.ConfigDict(dict(channels=(32, 64), hidden=128, batchnorm=False))
  c.mobilenet_v2 = ml_collections.ConfigDict(dict(variant="cifar", width=1.0))
  c.resnet18 = ml_collections.ConfigDict(dict(variant="cifar"))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=0.0))
  c.batch_sizes = (100, 1000)
  c.epochs = 1
  # PyTorch's DataLoader keeps a last short batch by default ("partial");
  # "drop" skips it so that every step has the same shape.
  c.last_batch = "partial"
  c.num_devices = 0  # 0: every local device of the kind in use
  c.eval_batch_size = 1000
  return c


def data_dir(config):
  return config.data_dir or os.environ.get("JBATCH_DATA_DIR", "")


def validate_common(config, sizes, num_train):
  """Checks shared by all studies: sizes are the resolved batch sizes, num_train the
  dataset's training size."""
  if config.last_batch not in LAST_BATCH_MODES:
    raise UserError(f"last_batch={config.last_batch!r}; choose one of {', '.join(LAST_BATCH_MODES)}")
  if config.epochs <= 0:
    raise UserError(f"epochs={config.epochs}; give a positive number of epochs")
  if not sizes:
    raise UserError("batch_sizes is empty; give at least one, e.g. --config.batch_sizes=100,1000")
  for b in sizes:
    if not isinstance(b, int) or b <= 0:
      raise UserError(f"batch size {b!r} is not a positive integer; fix --config.batch_sizes")
    if b > num_train:
      raise UserError(f"batch size {b} is larger than the {num_train} training examples; "
                      "lower it or use a larger dataset")


def batch_sizes(config, num_train):
  """config.batch_sizes with the word 'full' (the whole training set) resolved."""
  return tuple(num_train if b == "full" else b for b in config.batch_sizes)


def check_devices(batch_size, n_devices, num_train, last_batch):
  if batch_size % n_devices:
    raise UserError(f"batch size {batch_size} is not divisible by the {n_devices} devices; "
                    f"use a multiple of {n_devices} or set --config.num_devices")
  tail = num_train % batch_size
  if last_batch == "partial" and tail % n_devices:
    raise UserError(f"the last partial batch ({tail} of {num_train} examples at batch "
                    f"{batch_size}) does not split over {n_devices} devices; "
                    "set --config.last_batch=drop")


def fingerprint(config, ignore=("batch_sizes", "study")):
  """A short hash of what a run depends on, so resumes skip only truly finished work."""
  d = {k: v for k, v in config.to_dict().items() if k not in ignore}
  return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
