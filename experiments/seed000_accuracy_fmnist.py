"""S1 offline: seeds/000's setting on Fashion-MNIST from the shared idx files, CPU-sized.

Changed from the published setting (stated in every record's config): a small
CNN (conv 16, conv 32, dense 64, BatchNorm) instead of MobileNetV2, 10,000
training images, 3 epochs instead of 50. Kept: SGD momentum 0.9, weight decay
1e-4, linear LR scaling (0.1 at batch 128), cosine per step, batch 8 and 256,
random vs pre-trained start. The pre-trained start is the finished run of
experiments/pretrain_mnist.py (MNIST, same CNN): run that first.
"""

from jbatch.studies import accuracy


def get_config():
  c = accuracy.default_config()
  c.dataset = "fashion_mnist"
  c.train_subset = 10_000
  c.model = "cnn"
  c.cnn.channels = (16, 32)
  c.cnn.hidden = 64
  c.cnn.batchnorm = True
  c.batch_sizes = (8, 256)
  c.epochs = 3
  c.rules = ("linear",)
  c.inits = ("random", "pretrained")
  c.init_checkpoint = "runs/pretrain_mnist"
  # time to 0.8 test accuracy, recorded while training goes on
  c.target.metric, c.target.value, c.target.stop = "acc", 0.8, False
  return c
