"""The fully connected network of seeds/004: depth x width, ReLU, BatchNorm at the end.

On a CPU a large training batch runs its hidden layers over chunks of about
`chunk` rows, each recomputed in the backward pass (jax.checkpoint) instead of
kept: a chunk's activations stay in the CPU's caches, while the whole batch's
(6 layers x batch x 64 floats, 35 MB each at 135,844) stream to and from
memory at a few GB/s, which bounded the step (a train step of 20,000 rows
56 -> 35 ms, of 135,844 390 -> 306 ms; BENCHMARKS.md, "Large batches on the
CPU"). BatchNorm still normalizes over the whole batch: only the per-example
layers before it are chunked, so the numbers are those of the unchunked network
up to the order of float32 sums.
"""

import jax
from jax import lax
from flax import nnx

from jbatch.models import conv, tape as tape_lib
from jbatch.models.layers import BatchNorm, Dense


class MLP(nnx.Module):

  def __init__(self, in_features, num_classes, *, depth=6, width=64, batchnorm=True,
               bn_momentum=0.9, chunk=0, rngs):
    """chunk: rows per chunk of a training batch of at least four chunks (0: never); below
    that the whole batch's activations mostly fit in cache and recomputing them costs more
    (batch 10,000 in 2 chunks: 16 -> 19 ms a step)."""
    sizes = [in_features] + [width] * depth
    self.hidden = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    # momentum 0.9 is PyTorch's 0.1: running = 0.9 * running + 0.1 * batch.
    self.norm = BatchNorm(width, momentum=bn_momentum, rngs=rngs) if batchnorm else None
    self.out = Dense(width, num_classes, rngs=rngs)
    self.chunk = chunk

  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    n, c = x.shape[0], self.chunk
    # A recording tape (per-example norms) needs the layers called one by one.
    if train and c and n >= 4 * c and tape_lib.current() is None and conv.chunking():
      x = self._chunked_body(x, c)
    else:
      for layer in self.hidden:
        x = jax.nn.relu(layer(x))
    if self.norm is not None:
      x = self.norm(x, use_running_average=not train)
    return self.out(x)

  def _chunked_body(self, x, c):
    """The hidden layers over k = round(n / c) chunks of n // k rows (at most k - 1 rows
    left, run as one more), each recomputed for its gradient. Chunk j holds rows j, j + k,
    j + 2k, ..., so that a batch sharded over devices in blocks gives every chunk its
    share of each device's rows."""
    n = x.shape[0]
    k = round(n / c)
    c = n // k
    graphdef, state = nnx.split(self.hidden)
    run = jax.checkpoint(lambda xc: _apply(graphdef, state, xc))
    main = x[:k * c].reshape(c, k, x.shape[1]).swapaxes(0, 1)
    h = lax.map(run, main).swapaxes(0, 1).reshape(k * c, -1)
    if k * c == n:
      return h
    return jax.numpy.concatenate([h, _apply(graphdef, state, x[k * c:])])


def _apply(graphdef, state, x):
  for layer in nnx.merge(graphdef, state, copy=True):
    x = jax.nn.relu(layer(x))
  return x
