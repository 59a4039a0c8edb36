"""Teacher-labelled data of any size: tabular vectors or images.

Inputs are standard normal; labels are the argmax of a fixed random two-layer
teacher network, so the task is learnable to high accuracy yet not linear.
The S4 study (seeds/004) used 135,844 tabular samples of an unstated task;
this gives the same count and shape class with a known generating process.
"""

import numpy as np

from jbatch.data.dataset import Dataset


def make(num_train, num_test, input_shape, num_classes, seed=0, teacher_width=128):
  rng = np.random.default_rng(seed)
  features = int(np.prod(input_shape))
  w1 = rng.standard_normal((features, teacher_width)) / np.sqrt(features)
  w2 = rng.standard_normal((teacher_width, num_classes)) / np.sqrt(teacher_width)

  def sample(n):
    x = rng.standard_normal((n, features), dtype=np.float32)
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1).astype(np.int32)
    return x.reshape((n, *input_shape)), y

  train_x, train_y = sample(num_train)
  test_x, test_y = sample(num_test)
  return Dataset("synthetic", train_x, train_y, test_x, test_y, num_classes)
