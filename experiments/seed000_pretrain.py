"""The pre-training run for experiments/seed000_accuracy.py: MobileNetV2 (CIFAR variant) on
CIFAR-100 through TFDS, batch 128, 30 epochs; its finished checkpoint is the
"pre-trained" start (no ImageNet checkpoint can be fetched here)."""

from jbatch import config as config_lib


def get_config():
  c = config_lib.from_file(__file__, "seed000_accuracy")
  c.dataset = "tfds:cifar100"
  c.batch_sizes = (128,)
  c.epochs = 30
  c.inits = ("random",)
  c.init_checkpoint = ""
  return c
