"""Shallue et al. 2018 on Fashion-MNIST, offline: steps to validation error 0.1 by batch
size, as experiments/shallue_mnist.py (same CNN and search), up to 40 epochs per trial."""

from jbatch import config as config_lib


def get_config():
  c = config_lib.from_file(__file__, "shallue_mnist")
  c.dataset = "fashion_mnist"
  c.target.value = 0.1
  c.max_examples = 40 * 55_000
  return c
