"""S1 in small, offline: Fashion-MNIST (first 5,000 training images), a small CNN, batch
32 vs 256, linear vs no LR scaling, 2 epochs: a CPU minute."""

from jbatch.studies import accuracy


def get_config():
  c = accuracy.default_config()
  c.dataset = "fashion_mnist"
  c.train_subset = 5_000
  c.cnn.channels = (8, 16)
  c.cnn.hidden = 32
  c.batch_sizes = (32, 256)
  c.rules = ("none", "linear")
  c.epochs = 2
  c.eval_train_examples = 5_000
  # time to 0.7 test accuracy, recorded while training goes on
  c.target.metric, c.target.value, c.target.stop = "acc", 0.7, False
  return c
