"""S4 in small: the seeds/004 MLP on 20,000 synthetic samples, 3 epochs, CPU minutes."""

from jbatch.studies import throughput


def get_config():
  c = throughput.default_config()
  c.synthetic.num_train = 20_000
  c.batch_sizes = (100, 1000, 10000, "full")
  c.epochs = 3
  c.pow2_probe = (255, 256, 257)
  return c
