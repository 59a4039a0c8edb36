"""The in-memory dataset every source returns."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train_x: np.ndarray  # float32, (N, features) or (N, H, W, C)
  train_y: np.ndarray  # int32 class labels
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int

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


def standardize(train_x, test_x):
  """Zero mean, unit variance from the training set's statistics."""
  mean, std = train_x.mean(), train_x.std()
  return ((train_x - mean) / std).astype(np.float32), ((test_x - mean) / std).astype(np.float32)
