"""The MNIST-sized CNN of PyTorch's MNIST example: conv 32, conv 64, pool, dense 128, dense 10.

BatchNorm after each convolution is optional: the dynamics studies compare
the no-BatchNorm network (per-example gradients well defined) with it.
"""

import jax
from flax import nnx

from jbatch.models.conv import Conv
from jbatch.models.layers import BatchNorm, Dense, max_pool


class CNN(nnx.Module):

  def __init__(self, in_shape, num_classes, *, channels=(32, 64), hidden=128, batchnorm=False,
               bn_momentum=0.9, conv_impl="xla", rngs):
    height, width, in_channels = in_shape
    convs, norms = [], []
    for out_channels in channels:
      convs.append(Conv(in_channels, out_channels, 3, impl=conv_impl, rngs=rngs))
      norms.append(BatchNorm(out_channels, momentum=bn_momentum, rngs=rngs)
                   if batchnorm else None)
      in_channels = out_channels
      height, width = height - 2, width - 2
    self.convs, self.norms = nnx.List(convs), nnx.List(norms)
    flat = (height // 2) * (width // 2) * in_channels
    self.dense = Dense(flat, hidden, rngs=rngs)
    self.out = Dense(hidden, num_classes, rngs=rngs)

  def __call__(self, x, train=False):
    for conv, norm in zip(self.convs, self.norms):
      x = conv(x)
      if norm is not None:
        x = norm(x, use_running_average=not train)
      x = jax.nn.relu(x)
    x = max_pool(x, 2)
    x = jax.nn.relu(self.dense(x.reshape((x.shape[0], -1))))
    return self.out(x)
