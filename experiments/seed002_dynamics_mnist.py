"""seeds/002 on MNIST: the CNN of PyTorch's MNIST example (conv 32, conv 64, no BatchNorm),
batch 8 to 1024, SGD (0.05 at batch 128) and Adam (1e-3 at 128), LR scaled linearly with
batch (--config.rules=linear,sqrt adds the square-root rule Malladi et al. give for Adam),
20 epochs, probes every 15,000 examples on a fixed batch of 256; sharpness at the end;
accumulation 8 x 32 vs 256 with and without BatchNorm.

Hours on a 2-core CPU (batch 8 is 7,500 steps per epoch); minutes on a GPU.
Narrow it with e.g. --config.batch_sizes=32,1024 --config.epochs=5.
"""

from jbatch.studies import dynamics


def get_config():
  c = dynamics.default_config()
  c.train_subset = 0
  c.cnn.channels = (32, 64)
  c.cnn.hidden = 128
  c.batch_sizes = (8, 32, 128, 512, 1024)
  c.epochs = 20
  c.rules = ("linear",)
  c.optimizers = ("sgd", "adam")
  c.probes.every_examples = 15_000
  c.sharpness.examples = 1_024
  c.accumulation.steps = (8,)
  c.accumulation.epochs = 2
  c.eval_train_examples = 10_000
  return c
