"""MobileNetV2 (Sandler et al. 2018) as torchvision builds it, with a 32x32 CIFAR variant.

The CIFAR variant follows kuangliu/pytorch-cifar: the stem and the 24-channel
stage keep stride 1, so a 32x32 image ends at 4x4 rather than 1x1. Blocks are
torchvision's (a residual only where shapes already match). The classifier's
dropout is left out so that a train step needs no random stream; the
parameter count is unchanged by it (3,504,872 for width 1.0, 1000 classes).
"""

import functools

import jax
from flax import nnx

from jbatch.models.layers import ConvBN, Dense, global_avg_pool

# expansion t, channels c, repeats n, first stride s
IMAGENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                   (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value, divisor=8):
  """torchvision's rounding of channel counts under a width multiplier."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nnx.Module):

  def __init__(self, in_ch, out_ch, stride, expand, *, conv_bn):
    """conv_bn: ConvBN with the model's BatchNorm momentum, conv formulation and rngs."""
    hidden = in_ch * expand
    self.expand = conv_bn(in_ch, hidden, 1, act=jax.nn.relu6) if expand != 1 else None
    self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden, act=jax.nn.relu6)
    self.project = conv_bn(hidden, out_ch, 1, act=None)
    self.residual = stride == 1 and in_ch == out_ch

  def __call__(self, x, train=False):
    y = self.expand(x, train) if self.expand is not None else x
    y = self.project(self.depthwise(y, train), train)
    return x + y if self.residual else y


class MobileNetV2(nnx.Module):

  def __init__(self, num_classes, *, variant="cifar", width=1.0, bn_momentum=0.9,
               conv_impl="xla", rngs):
    conv_bn = functools.partial(ConvBN, bn_momentum=bn_momentum, conv_impl=conv_impl, rngs=rngs)
    stages, stem_stride = (CIFAR_STAGES, 1) if variant == "cifar" else (IMAGENET_STAGES, 2)
    in_ch = make_divisible(32 * width)
    self.stem = conv_bn(3, in_ch, 3, stem_stride, act=jax.nn.relu6)
    blocks = []
    for expand, channels, repeats, stride in stages:
      out_ch = make_divisible(channels * width)
      for i in range(repeats):
        blocks.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expand,
                                       conv_bn=conv_bn))
        in_ch = out_ch
    self.blocks = nnx.List(blocks)
    last = make_divisible(1280 * max(1.0, width))
    self.head = conv_bn(in_ch, last, 1, act=jax.nn.relu6)
    self.classifier = Dense(last, num_classes, rngs=rngs)

  def __call__(self, x, train=False):
    x = self.stem(x, train)
    for block in self.blocks:
      x = block(x, train)
    return self.classifier(global_avg_pool(self.head(x, train)))
