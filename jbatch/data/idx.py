"""MNIST-format (idx) files from a directory: mnist and fashion_mnist.

Looks for the four files of the original distribution, gzipped or not, and
checks magic numbers and sizes before trusting them, so a truncated download
is a clear error rather than a reshape failure deep inside training.
"""

import gzip
import os
import struct

import numpy as np

from jbatch.data.dataset import Dataset, standardize
from jbatch.errors import UserError

FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def find_files(name, data_dir):
  """The four paths, or a UserError naming what is missing and where to put it."""
  if not data_dir:
    raise UserError(f"dataset {name!r} needs its idx files: set --config.data_dir or "
                    "JBATCH_DATA_DIR to a folder holding them")
  candidates = [os.path.join(data_dir, FOLDERS[name]), os.path.join(data_dir, name), data_dir]
  for folder in candidates:
    paths = {key: _existing(os.path.join(folder, base)) for key, base in FILES.items()}
    if all(paths.values()):
      return paths
  raise UserError(f"dataset {name!r}: no {FILES['train_x']}[.gz] and its three companions in "
                  f"{candidates[0]} or {data_dir}; point --config.data_dir at the folder "
                  "that holds them")


def check(name, data_dir):
  """Cheap validation before any work: files exist and their headers agree."""
  paths = find_files(name, data_dir)
  for split in ("train", "test"):
    n_images = _header(paths[f"{split}_x"], IMAGE_MAGIC)[0]
    n_labels = _header(paths[f"{split}_y"], LABEL_MAGIC)[0]
    if n_images != n_labels:
      raise UserError(f"dataset {name!r}: {paths[split + '_x']} holds {n_images} images but "
                      f"its labels file {n_labels}; replace the corrupt file")
  return paths


def load(name, data_dir):
  paths = check(name, data_dir)
  arrays = {key: _read(path, IMAGE_MAGIC if key.endswith("x") else LABEL_MAGIC)
            for key, path in paths.items()}
  train_x, test_x = standardize(arrays["train_x"][..., None] / np.float32(255),
                                arrays["test_x"][..., None] / np.float32(255))
  return Dataset(name, train_x, arrays["train_y"].astype(np.int32), test_x,
                 arrays["test_y"].astype(np.int32), num_classes=10)


def _existing(base):
  for path in (base + ".gz", base):
    if os.path.isfile(path):
      return path
  return None


def _open(path):
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _header(path, magic):
  dims = 3 if magic == IMAGE_MAGIC else 1
  try:
    with _open(path) as f:
      raw = f.read(4 + 4 * dims)
  except (OSError, EOFError) as e:
    raise UserError(f"cannot read {path} ({e}); replace the corrupt file") from None
  if len(raw) < 4 + 4 * dims or struct.unpack(">i", raw[:4])[0] != magic:
    raise UserError(f"{path} is not an idx file (expected magic {magic}); replace it")
  return struct.unpack(f">{dims}i", raw[4:])


def _read(path, magic):
  dims = _header(path, magic)
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f"cannot read {path} ({e}); replace the corrupt file") from None
  offset = 4 + 4 * len(dims)
  expected = int(np.prod(dims))
  if len(raw) - offset != expected:
    raise UserError(f"{path} is truncated or padded: header promises {expected} bytes of "
                    f"data, file has {len(raw) - offset}; replace it")
  return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def raw_train(name, data_dir):
  """(uint8 training images (n, 28, 28), uint8 labels) as stored, for writing image folders."""
  paths = check(name, data_dir)
  return _read(paths["train_x"], IMAGE_MAGIC), _read(paths["train_y"], LABEL_MAGIC)
