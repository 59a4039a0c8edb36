"""S1 as published (seeds/000): CIFAR-10 through TFDS, MobileNetV2 (CIFAR variant), 50 epochs,
SGD momentum 0.9, weight decay 1e-4, LR 0.1 at batch 128 scaled linearly, cosine per step,
batch 8 and 256, random and pre-trained starts.

Needs the prepared TFDS cifar10 (and cifar100 for the pre-training) under
$JBATCH_DATA_DIR/tfds (or TFDS_DATA_DIR). The pre-trained
start is the finished run of experiments/seed000_pretrain.py (MobileNetV2 on
CIFAR-100; the 100-class head is replaced by a fresh 10-class one). Meant for
a GPU: at batch 8 an epoch is 6,250 steps.
"""

from jbatch.studies import accuracy


def get_config():
  c = accuracy.default_config()
  c.dataset = "cifar10"
  c.model = "mobilenet_v2"
  c.mobilenet_v2.variant = "cifar"
  c.batch_sizes = (8, 256)
  c.epochs = 50
  c.rules = ("linear",)
  c.optimizers = ("sgd",)
  c.learning_rates.sgd = 0.1
  c.schedule.base_batch_size = 128
  c.schedule.decay = "cosine"
  c.inits = ("random", "pretrained")
  c.init_checkpoint = "runs/seed000_pretrain"
  # time to 0.9 test accuracy, recorded while training goes on
  c.target.metric, c.target.value, c.target.stop = "acc", 0.9, False
  c.checkpoint_every = 5
  return c
