"""Keskar et al. 2016 on MNIST: a small batch (256) vs a large one (10% of the data, 6,000),
Adam, at a fixed learning rate and with it scaled (sqrt and linear from 1e-3 at 256).

Their F1 network is 5 hidden layers of 512 with BatchNorm; here the MLP has 5 x 512 with
BatchNorm before the output (jbatch's mlp). Published: 98.03% (small) vs 97.81% (large).
"""

from jbatch.studies import accuracy


def get_config():
  c = accuracy.default_config()
  c.dataset = "mnist"
  c.model = "mlp"
  c.mlp.depth = 5
  c.mlp.width = 512
  c.mlp.batchnorm = True
  c.batch_sizes = (256, 6000)
  c.optimizers = ("adam",)
  c.optimizer.weight_decay = 0.0
  c.rules = ("none", "sqrt", "linear")
  c.schedule.base_batch_size = 256
  c.schedule.decay = "constant"
  c.epochs = 20
  # time to 0.97 test accuracy, recorded while training goes on
  c.target.metric, c.target.value, c.target.stop = "acc", 0.97, False
  c.eval_train_examples = 60_000
  return c
