"""S3/S5 in small, offline: MNIST (first 2,048 training images), a small CNN without
BatchNorm, batch 16 vs 256, SGD vs Adam, 2 epochs, probes every 512 examples on a fixed batch
of 128, sharpness at the end, and 4 x 32 accumulation vs batch 128 with and without
BatchNorm: about a CPU minute and a half."""

from jbatch.studies import dynamics


def get_config():
  c = dynamics.default_config()
  c.train_subset = 2_048
  c.eval_train_examples = 2_048
  c.probes.every_examples = 512
  c.probes.batch_size = 128
  c.sharpness.iters = 10
  c.sharpness.examples = 256
  return c
