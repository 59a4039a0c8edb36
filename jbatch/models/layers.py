"""Building blocks shared by the convolutional models, laid out as torchvision lays them.

Padding is explicit (kernel // 2 on each side) rather than "SAME", so strided
convolutions line up with PyTorch's and weights copied across give the same
outputs.
"""

import jax
from flax import nnx


class ConvBN(nnx.Module):
  """Convolution without bias, BatchNorm, optional activation."""

  def __init__(self, in_ch, out_ch, kernel=3, stride=1, *, groups=1, act=jax.nn.relu,
               bn_momentum=0.9, rngs):
    pad = kernel // 2
    self.conv = nnx.Conv(in_ch, out_ch, (kernel, kernel), (stride, stride),
                         padding=((pad, pad), (pad, pad)), feature_group_count=groups,
                         use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(out_ch, momentum=bn_momentum, rngs=rngs)
    self.act = act

  def __call__(self, x, train=False):
    x = self.norm(self.conv(x), use_running_average=not train)
    return self.act(x) if self.act is not None else x


def global_avg_pool(x):
  return x.mean(axis=(1, 2))
