"""VGG (Simonyan & Zisserman 2014) as the CIFAR variants of kuangliu/pytorch-cifar lay it out:
3x3 convolutions (padding 1) in five stages, each ended by a 2x2 max-pool, then one dense
classifier. seeds/002 plots VGG-16 without BatchNorm; `batchnorm` adds it after every
convolution. Inputs smaller than 32x32 (MNIST's 28x28) skip the pools that would leave
nothing, and a global average pool before the classifier makes any size fit.
"""

import jax
from flax import nnx

from jbatch.models.conv import Conv
from jbatch.models.layers import BatchNorm, Dense, global_avg_pool, max_pool

STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)


class VGG(nnx.Module):

  def __init__(self, in_shape, num_classes, *, depth=16, batchnorm=False, width=1.0,
               bn_momentum=0.9, conv_impl="xla", rngs):
    if depth not in STAGES:
      raise ValueError(f"VGG depth {depth}; choose one of {sorted(STAGES)}")
    height, _, in_ch = in_shape
    convs, norms, pools = [], [], []
    for repeats, channels in zip(STAGES[depth], CHANNELS):
      out_ch = max(1, int(channels * width))
      for _ in range(repeats):
        # With BatchNorm the bias is redundant; kuangliu keeps it, so do we (same count).
        convs.append(Conv(in_ch, out_ch, 3, padding=1, impl=conv_impl, rngs=rngs))
        norms.append(BatchNorm(out_ch, momentum=bn_momentum, rngs=rngs) if batchnorm else None)
        pools.append(False)
        in_ch = out_ch
      pools[-1] = height >= 2
      height = height // 2 if height >= 2 else height
    self.convs, self.norms, self.pools = nnx.List(convs), nnx.List(norms), tuple(pools)
    self.classifier = Dense(in_ch, num_classes, rngs=rngs)

  def __call__(self, x, train=False):
    for conv, norm, pool in zip(self.convs, self.norms, self.pools):
      x = conv(x)
      if norm is not None:
        x = norm(x, use_running_average=not train)
      x = jax.nn.relu(x)
      if pool:
        x = max_pool(x, 2)
    return self.classifier(global_avg_pool(x))
