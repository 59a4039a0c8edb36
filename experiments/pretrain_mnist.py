"""Pre-training for the offline S1 config: the same small CNN trained on MNIST, one run.

Its finished checkpoint (runs/pretrain_mnist/checkpoints/...) is the
"pre-trained" start of experiments/seed000_accuracy_fmnist.py.
"""

from jbatch import config as config_lib


def get_config():
  c = config_lib.from_file(__file__, "seed000_accuracy_fmnist")
  c.dataset = "mnist"
  c.batch_sizes = (128,)
  c.inits = ("random",)
  c.init_checkpoint = ""
  return c
