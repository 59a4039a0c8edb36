"""Any TFDS dataset whose prepared files already exist (cifar10, mnist, ...).

Without a network tfds.load waits minutes before failing, so `check` looks
for the prepared dataset folder first and fails at once with a one-line error.
"""

import glob
import os

import numpy as np

from jbatch.data.dataset import Dataset, standardize
from jbatch.errors import UserError


def tfds_dir(data_dir):
  return (os.environ.get("TFDS_DATA_DIR") or (os.path.join(data_dir, "tfds") if data_dir else "")
          or os.path.expanduser("~/tensorflow_datasets"))


def check(name, data_dir):
  root = tfds_dir(data_dir)
  prepared = glob.glob(os.path.join(root, name, "*", "*", "dataset_info.json"))
  if not prepared:
    raise UserError(f"TFDS dataset {name!r} is not prepared under {root} (no network here to "
                    f"download it): run `tfds build {name} --data_dir={root}` where a network "
                    "is reachable and copy the folder, or set TFDS_DATA_DIR")
  try:
    import tensorflow_datasets  # noqa: F401
  except ImportError:
    raise UserError(f"dataset {name!r} reads through TFDS: pip install 'jbatch[tfdata]'") from None
  return root


def load(name, data_dir):
  root = check(name, data_dir)
  import tensorflow_datasets as tfds
  splits = tfds.as_numpy(tfds.load(name, split=["train", "test"], batch_size=-1,
                                   data_dir=root, download=False, as_supervised=True))
  (train_x, train_y), (test_x, test_y) = splits
  num_classes = tfds.builder(name, data_dir=root).info.features["label"].num_classes
  train_x, test_x = standardize(train_x.astype(np.float32) / 255, test_x.astype(np.float32) / 255)
  return Dataset(name, train_x, train_y.astype(np.int32), test_x, test_y.astype(np.int32),
                 num_classes)
