"""ResNet-18 (He et al. 2016) as torchvision builds it, with a CIFAR stem variant.

The CIFAR variant swaps the 7x7/2 stem and max-pool for a 3x3/1 stem, as is
usual for 32x32 inputs. ImageNet variant: 11,689,512 parameters.
"""

import functools

import jax
from flax import nnx

from jbatch.models.layers import ConvBN, Dense, global_avg_pool


class BasicBlock(nnx.Module):

  def __init__(self, in_ch, out_ch, stride, *, conv_bn):
    """conv_bn: ConvBN with the model's BatchNorm momentum, conv formulation and rngs."""
    self.conv1 = conv_bn(in_ch, out_ch, 3, stride)
    self.conv2 = conv_bn(out_ch, out_ch, 3, act=None)
    self.shortcut = (conv_bn(in_ch, out_ch, 1, stride, act=None)
                     if stride != 1 or in_ch != out_ch else None)

  def __call__(self, x, train=False):
    y = self.conv2(self.conv1(x, train), train)
    x = self.shortcut(x, train) if self.shortcut is not None else x
    return jax.nn.relu(x + y)


class ResNet18(nnx.Module):

  def __init__(self, num_classes, *, variant="cifar", bn_momentum=0.9, conv_impl="xla", rngs):
    conv_bn = functools.partial(ConvBN, bn_momentum=bn_momentum, conv_impl=conv_impl, rngs=rngs)
    self.imagenet_stem = variant != "cifar"
    self.stem = conv_bn(3, 64, 7 if self.imagenet_stem else 3, 2 if self.imagenet_stem else 1)
    blocks, in_ch = [], 64
    for stage, out_ch in enumerate((64, 128, 256, 512)):
      for i in range(2):
        stride = 2 if stage > 0 and i == 0 else 1
        blocks.append(BasicBlock(in_ch, out_ch, stride, conv_bn=conv_bn))
        in_ch = out_ch
    self.blocks = nnx.List(blocks)
    self.fc = Dense(512, num_classes, rngs=rngs)

  def __call__(self, x, train=False):
    x = self.stem(x, train)
    if self.imagenet_stem:
      x = nnx.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for block in self.blocks:
      x = block(x, train)
    return self.fc(global_avg_pool(x))
