"""The fully connected network of seeds/004: depth x width, ReLU, BatchNorm at the end."""

import jax
from flax import nnx

from jbatch.models.layers import BatchNorm, Dense


class MLP(nnx.Module):

  def __init__(self, in_features, num_classes, *, depth=6, width=64, batchnorm=True,
               bn_momentum=0.9, rngs):
    sizes = [in_features] + [width] * depth
    self.hidden = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    # momentum 0.9 is PyTorch's 0.1: running = 0.9 * running + 0.1 * batch.
    self.norm = BatchNorm(width, momentum=bn_momentum, rngs=rngs) if batchnorm else None
    self.out = Dense(width, num_classes, rngs=rngs)

  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    if self.norm is not None:
      x = self.norm(x, use_running_average=not train)
    return self.out(x)
