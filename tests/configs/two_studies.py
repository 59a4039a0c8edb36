"""A tiny suite for the multi-process tests: one accuracy point and one dynamics point
(probes with the noise scale from groups), synthetic data, MLP."""

import ml_collections

from jbatch.studies import accuracy, dynamics


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "suite"
  c.suite = ("accuracy", "dynamics")
  a = accuracy.default_config()
  d = dynamics.default_config()
  for s in (a, d):
    s.dataset = "synthetic"
    s.model = "mlp"
    s.synthetic.num_train = 512
    s.synthetic.num_test = 128
    s.train_subset = 0
    s.eval_train_examples = 128
    s.epochs = 1
    s.rules = ("none",)
    s.optimizers = ("sgd",)
    # A small step: this BatchNorm MLP at LR 0.1 turns float32 round-off (one device's sums
    # against two devices') into differences of 1e-3 within 16 steps.
    s.learning_rates.sgd = 0.02
  a.batch_sizes = (64,)
  d.batch_sizes = (64,)
  d.probes.every_examples = 256
  d.probes.batch_size = 64
  d.probes.groups = 2  # one device: 2 groups, as 2 devices have
  d.sharpness.iters = 0  # not what these tests are about: a compile saved
  d.accumulation.steps = ()
  c.accuracy, c.dynamics = a, d
  return c
