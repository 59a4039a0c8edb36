"""MNIST-1D (Greydanus 2020), generated offline with the package's own make_dataset.

get_dataset would try a download first; make_dataset builds the same 40-point
sequences from templates shipped in the package, deterministically from the seed.
"""

import numpy as np

from jbatch.data.dataset import Dataset
from jbatch.errors import UserError


def check():
  try:
    import mnist1d  # noqa: F401
  except ImportError:
    raise UserError("dataset 'mnist1d' needs the mnist1d package: pip install 'jbatch[mnist1d]'") from None


def load(num_samples=5000, seed=42):
  check()
  from mnist1d.data import get_dataset_args, make_dataset
  args = get_dataset_args()
  args.num_samples, args.seed = num_samples, seed
  d = make_dataset(args)
  return Dataset("mnist1d", np.asarray(d["x"], np.float32), np.asarray(d["y"], np.int32),
                 np.asarray(d["x_test"], np.float32), np.asarray(d["y_test"], np.int32), 10)
