"""S5 in small, offline: MNIST (the first 4,096 training images, 512 more held out for
validation), a small MLP, batch 16 ... 2048, 4 learning rates each, trained until 90%
validation accuracy (or 32,768 examples): under two CPU minutes."""

from jbatch.studies import critical_batch


def get_config():
  c = critical_batch.default_config()
  c.train_subset = 4_608
  c.validation_examples = 512
  c.model = "mlp"
  c.mlp.depth = 2
  c.mlp.width = 64
  c.mlp.batchnorm = False
  c.batch_sizes = tuple(2 ** k for k in range(4, 12))
  c.trials = 4
  c.lr_range = (0.003, 0.3)
  c.target.metric = "acc"
  c.target.value = 0.9
  c.max_examples = 32_768
  c.eval_every_examples = 512
  c.probes.every_examples = 4_096
  c.probes.batch_size = 128
  c.speed.steps = 8
  c.memory_budget = 1 << 28
  return c
