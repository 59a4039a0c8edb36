"""Shallue et al. 2018 on MNIST, offline: steps to validation error 0.01 by batch size, LR
and momentum tuned per batch (quasi-random search), SGD with momentum, constant LR.

Their Simple CNN has two 5x5 convolutions (32, 64) with a pooling after each and a dense
layer of 1,024; jbatch's CNN has two 3x3 convolutions (32, 64), one pooling and the same
dense layer. 55,000 training images, the last 5,000 of MNIST's training set held out for
validation; up to 20 epochs per trial. Hours on a CPU; minutes on a GPU.
"""

from jbatch.studies import critical_batch


def get_config():
  c = critical_batch.default_config()
  c.dataset = "mnist"
  c.validation_examples = 5_000
  c.model = "cnn"
  c.cnn.channels = (32, 64)
  c.cnn.hidden = 1_024
  c.batch_sizes = tuple(2 ** k for k in range(4, 14))  # 16 ... 8192
  c.trials = 16
  c.search = "quasi"
  c.lr_range = (1e-3, 2.0)
  c.momentum_range = (0.5, 0.99)
  c.target.metric, c.target.value, c.target.split = "error", 0.01, "validation"
  c.max_examples = 20 * 55_000
  c.eval_every_examples = 8_192
  c.probes.every_examples = 32_768
  return c
