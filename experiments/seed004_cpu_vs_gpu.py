"""seeds/004 as published: 6x64 MLP + BatchNorm, 135,844 samples, 50 epochs,
batch 100 to 10,000 and the full set, every variant on every device present."""

from jbatch.studies import throughput


def get_config():
  c = throughput.default_config()
  c.synthetic.num_train = 135_844
  c.batch_sizes = (100, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, "full")
  c.epochs = 50
  c.variants = ("jax_fused", "jax_host", "torch_eager", "torch_compile")
  c.pow2_probe = (255, 256, 257, 1000, 1024)
  return c
