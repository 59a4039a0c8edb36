import gzip
import os
import shutil
import time

import numpy as np
import pytest

from jbatch import config as config_lib
from jbatch.data import idx, mnist1d, registry, synthetic
from jbatch.errors import UserError


def test_real_mnist_files(mnist_dir):
  ds = idx.load("mnist", mnist_dir)
  assert ds.train_x.shape == (60000, 28, 28, 1) and ds.test_x.shape == (10000, 28, 28, 1)
  assert ds.train_x.dtype == np.float32
  assert abs(float(ds.train_x.mean())) < 1e-3 and abs(float(ds.train_x.std()) - 1) < 1e-3
  assert np.bincount(ds.train_y).tolist()[:2] == [5923, 6742]  # MNIST's published counts
  assert set(np.unique(ds.test_y)) == set(range(10))


def test_fashion_mnist_through_the_registry(mnist_dir):
  c = config_lib.base()
  c.dataset, c.data_dir = "fashion_mnist", mnist_dir
  assert registry.check(c) == 60000
  assert np.bincount(registry.load(c).train_y).tolist() == [6000] * 10


def test_missing_and_corrupt_idx_files(tmp_path, mnist_dir):
  with pytest.raises(UserError, match="no train-images-idx3-ubyte"):
    idx.check("mnist", str(tmp_path))
  folder = tmp_path / "mnist"
  shutil.copytree(os.path.join(mnist_dir, "mnist"), folder)
  with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(b"\x00\x00\x08\x03" + b"\x00" * 8)  # an images magic in a labels file
  with pytest.raises(UserError, match="not an idx file"):
    idx.check("mnist", str(tmp_path))
  (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(UserError, match="replace"):
    idx.check("mnist", str(tmp_path))


def test_truncated_idx_data_is_caught(tmp_path, mnist_dir):
  folder = tmp_path / "mnist"
  shutil.copytree(os.path.join(mnist_dir, "mnist"), folder)
  with gzip.open(os.path.join(mnist_dir, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
    raw = f.read()
  with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(raw[:-100])
  with pytest.raises(UserError, match="truncated"):
    idx.load("mnist", str(tmp_path))


def test_synthetic_is_deterministic_and_learnable_shape():
  a = synthetic.make(500, 100, (8, 8, 3), 5, seed=1)
  b = synthetic.make(500, 100, (8, 8, 3), 5, seed=1)
  np.testing.assert_array_equal(a.train_x, b.train_x)
  assert a.train_x.shape == (500, 8, 8, 3) and a.num_classes == 5
  assert len(np.unique(a.train_y)) == 5  # the teacher uses every class


def test_mnist1d_offline():
  pytest.importorskip("mnist1d")
  ds = mnist1d.load(num_samples=500, seed=0)
  assert ds.train_x.shape == (400, 40) and ds.test_x.shape == (100, 40)


def test_unprepared_tfds_dataset_fails_at_once(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  c = config_lib.base()
  c.dataset = "cifar10"
  t0 = time.perf_counter()
  with pytest.raises(UserError, match="not prepared"):
    registry.check(c)
  assert time.perf_counter() - t0 < 5


def test_unknown_dataset():
  c = config_lib.base()
  c.dataset = "imagenet21k"
  with pytest.raises(UserError, match="unknown dataset"):
    registry.check(c)
