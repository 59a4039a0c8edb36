"""S2 loader workers in small, offline: 256 MNIST images as 224x224 JPEG files, cropped to 64,
batch 32, workers 0/1/2 for tf.data, Grain and the PyTorch DataLoader, alone and feeding a
MobileNetV2 (width 0.35) train step: about a CPU minute."""

from jbatch.studies import loader


def get_config():
  c = loader.default_config()
  c.images.count = 256
  c.workers = (0, 1, 2)
  c.batch_size = 32
  c.crop_size = 64
  c.mobilenet_v2.width = 0.35
  return c
