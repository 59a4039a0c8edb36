"""seeds/000's loader table at full size: MobileNetV2 (224x224), batch 256, 4,096 JPEG files
(MNIST resized to 224x224 RGB), workers 0 to 16 for tf.data, Grain and the PyTorch
DataLoader, alone and feeding the train step. For a machine with many cores and a GPU; on
a 2-core CPU the train step alone takes tens of seconds per batch."""

from jbatch.studies import loader


def get_config():
  c = loader.default_config()
  c.images.count = 4_096
  c.workers = (0, 1, 2, 4, 8, 16)
  c.batch_size = 256
  c.crop_size = 224
  return c
