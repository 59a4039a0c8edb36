"""Dataset names -> sources. `check` is cheap and runs before any work; `load` reads.

Both apply train_subset (the first N training examples) and validation_examples
(the last N of those held out as a validation split); the training size they
give is what is left.

Names: synthetic, mnist1d, mnist and fashion_mnist (idx files in data_dir),
cifar10 and any other TFDS name as tfds:<name> (prepared data only).
"""

from jbatch import config as config_lib
from jbatch.data import idx, mnist1d, synthetic, tfds_source
from jbatch.errors import UserError

NAMES = ("synthetic", "mnist1d", "mnist", "fashion_mnist", "cifar10", "tfds:<name>")


def _tfds_name(name):
  if name == "cifar10":
    return "cifar10"
  return name[len("tfds:"):] if name.startswith("tfds:") else None


def check(config):
  """Validate the dataset choice; returns the training-set size when it is known cheaply."""
  subset = config.get("train_subset", 0)
  if subset < 0:
    raise UserError(f"train_subset={subset}; give 0 (all) or a positive number of examples")
  n = _check_source(config)
  n = min(n, subset) if n is not None and subset else n
  held = config.get("validation_examples", 0)
  if held < 0:
    raise UserError(f"validation_examples={held}; give 0 (none) or a positive number")
  if n is not None and held >= n:
    raise UserError(f"validation_examples={held} is not smaller than the {n} training "
                    "examples; hold out fewer")
  return n - held if n is not None else None


def _check_source(config):
  name = config.dataset
  if name == "synthetic":
    s = config.synthetic
    if s.num_train <= 0 or s.num_test <= 0 or s.num_classes < 2:
      raise UserError("synthetic data needs num_train > 0, num_test > 0 and num_classes >= 2")
    return s.num_train
  if name == "mnist1d":
    mnist1d.check()
    return None
  if name in idx.FOLDERS:
    paths = idx.check(name, config_lib.data_dir(config))
    return idx._header(paths["train_x"], idx.IMAGE_MAGIC)[0]
  if _tfds_name(name):
    tfds_source.check(_tfds_name(name), config_lib.data_dir(config))
    return None
  raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def load(config):
  check(config)
  return subset(config, load_source(config), config.dataset)


def subset(config, dataset, name):
  """train_subset and validation_examples applied to a loaded dataset, its values checked."""
  dataset = dataset.first(config.get("train_subset", 0))
  held = config.get("validation_examples", 0)
  if held >= dataset.num_train:
    raise UserError(f"validation_examples={held} is not smaller than the {dataset.num_train} "
                    "training examples; hold out fewer")
  dataset = dataset.hold_out(held)
  _check_values(dataset, name=name)
  return dataset


def _check_values(dataset, name):
  """Labels in [0, num_classes) and finite inputs: a corrupt file otherwise trains quietly
  on all-zero one-hot rows, or reads as a divergence."""
  import numpy as np
  splits = {"training": (dataset.train_x, dataset.train_y), "test": (dataset.test_x,
                                                                      dataset.test_y)}
  if dataset.val_x is not None:
    splits["validation"] = (dataset.val_x, dataset.val_y)
  for split, (x, y) in splits.items():
    bad = (np.flatnonzero((y < 0) | (y >= dataset.num_classes)) if dataset.num_classes
           else np.zeros(0, int))
    if bad.size:
      raise UserError(f"dataset {name}: {bad.size} {split} label(s) outside [0, "
                      f"{dataset.num_classes}), the first {int(y[bad[0]])} at example "
                      f"{int(bad[0])}; the labels file is corrupt: replace it")
    if not np.issubdtype(x.dtype, np.floating):
      continue  # integer inputs (tokens) are finite
    finite = np.isfinite(x)
    if not finite.all():
      first = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
      raise UserError(f"dataset {name}: {int((~finite).sum())} NaN or infinite value(s) in "
                      f"the {split} inputs, the first in example {first}; fix or replace the "
                      "data")


def load_source(config):
  """The named source as it is: all its training examples."""
  name = config.dataset
  if name == "synthetic":
    s = config.synthetic
    return synthetic.make(s.num_train, s.num_test, tuple(s.input_shape), s.num_classes,
                          seed=config.seed)
  if name == "mnist1d":
    return mnist1d.load(seed=config.seed)
  if name in idx.FOLDERS:
    return idx.load(name, config_lib.data_dir(config))
  return tfds_source.load(_tfds_name(name), config_lib.data_dir(config))
