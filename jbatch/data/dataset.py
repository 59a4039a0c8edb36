"""The in-memory dataset every source and workload returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train_x: np.ndarray  # float32, (N, features) or (N, H, W, C)
  train_y: np.ndarray  # int32 class labels, or a workload's targets of any shape
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int | None = None  # None: not a classifier
  val_x: np.ndarray | None = None  # a validation split held out of the training set
  val_y: np.ndarray | None = None

  @property
  def input_shape(self):
    return tuple(self.train_x.shape[1:])

  @property
  def num_train(self):
    return len(self.train_x)

  def first(self, n):
    """The first n training examples (the test set unchanged); n=0 keeps them all."""
    if not n or n >= self.num_train:
      return self
    return dataclasses.replace(self, train_x=self.train_x[:n], train_y=self.train_y[:n])

  def hold_out(self, n):
    """The last n training examples become the validation split (n=0: none), so that a
    target can be tuned on without touching the test set."""
    if not n:
      return self
    keep = self.num_train - n
    return dataclasses.replace(self, train_x=self.train_x[:keep], train_y=self.train_y[:keep],
                               val_x=self.train_x[keep:], val_y=self.train_y[keep:])


def standardize(train_x, test_x):
  """Zero mean, unit variance from the training set's statistics."""
  mean, std = train_x.mean(), train_x.std()
  return ((train_x - mean) / std).astype(np.float32), ((test_x - mean) / std).astype(np.float32)
