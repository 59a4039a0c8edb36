"""The fully connected network of seeds/004: depth x width, ReLU, BatchNorm at the end.

On a CPU a large training batch runs its hidden layers over chunks of about
`chunk` rows (half that under four chunks; chunks()), each recomputed in the
backward pass (jax.checkpoint) instead of kept: a chunk's activations stay in
the CPU's caches, while the whole batch's (6 layers x batch x 64 floats, 35 MB
each at 135,844) stream to and from memory at a few GB/s, which bounded the step (a train step of 20,000 rows
56 -> 35 ms, of 135,844 390 -> 306 ms; BENCHMARKS.md, "Large batches on the
CPU"). BatchNorm still normalizes over the whole batch: only the per-example
layers before it are chunked, so the numbers are those of the unchunked network
up to the order of float32 sums.
"""

import jax
import jax.numpy as jnp
from jax import lax
from flax import nnx

from jbatch.models import conv, tape as tape_lib
from jbatch.models.layers import BatchNorm, Dense


class MLP(nnx.Module):

  def __init__(self, in_features, num_classes, *, depth=6, width=64, batchnorm=True,
               bn_momentum=0.9, chunk=0, piece_rows=0, rngs):
    """chunk: rows per chunk of a training batch of at least four chunks, and half as many
    rows per chunk for a batch of four to eight half-chunks (0: never chunked); below that
    the whole batch's activations mostly fit in cache and recomputing them costs more
    (batch 10,000 in 2 chunks: 16 -> 19 ms a step). Half-chunks, not the whole batch,
    because there the whole batch's temporaries (80 MB at 20,000 rows) are over what one
    heap holds and JAX's compile cache could not store its program (cpu_memory.py);
    in half-chunks they are 25 MB, for a step 1.08x slower. piece_rows: the most rows of
    a chunked batch's activations kept in one array (0: one array)."""
    sizes = [in_features] + [width] * depth
    self.hidden = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    # momentum 0.9 is PyTorch's 0.1: running = 0.9 * running + 0.1 * batch.
    self.norm = BatchNorm(width, momentum=bn_momentum, rngs=rngs) if batchnorm else None
    self.out = Dense(width, num_classes, rngs=rngs)
    self.chunk, self.piece_rows = chunk, piece_rows

  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    split = chunks(x.shape[0], self.chunk)
    # A recording tape (per-example norms) needs the layers called one by one.
    if train and split and tape_lib.current() is None and conv.chunking():
      return self._chunked(x, *split)
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    if self.norm is not None:
      x = self.norm(x, use_running_average=not train)
    return self.out(x)

  def _chunked(self, x, k, c):
    """The hidden layers over k chunks of c rows (chunks(); at most k - 1 rows left, run
    as one more), each recomputed for its gradient. Chunk j holds rows j, j + k,
    j + 2k, ..., so that a batch sharded over devices in blocks gives every chunk its
    share of each device's rows. The whole batch's activations stay in pieces of at most
    piece_rows rows (whole chunks), normalized together: an array larger than a thread
    arena's heap would get fresh pages at every call (jbatch/cpu_memory.py). Only the
    logits are put back in the batch's row order."""
    n = x.shape[0]
    graphdef, state = nnx.split(self.hidden)
    run = jax.checkpoint(lambda xc: _apply(graphdef, state, xc))
    main = x[:k * c].reshape(c, k, x.shape[1]).swapaxes(0, 1)
    groups = -(-k * c // self.piece_rows) if self.piece_rows else 1
    bounds = [k * g // groups for g in range(groups + 1)]
    pieces = [lax.map(run, main[a:b]).reshape((b - a) * c, -1) for a, b in zip(bounds, bounds[1:])]
    if k * c < n:
      pieces.append(_apply(graphdef, state, x[k * c:]))
    if self.norm is not None:
      pieces = self.norm.over_pieces(pieces)
    logits = [self.out(p) for p in pieces]
    ordered = jnp.concatenate(logits[:groups]).reshape(k, c, -1).swapaxes(0, 1).reshape(k * c, -1)
    return jnp.concatenate([ordered] + logits[groups:])


def chunks(n, chunk):
  """(k, rows): a training batch of n rows runs its hidden layers as k chunks of rows =
  n // k rows, k = round(n / c), where c = chunk for a batch of at least four chunks and
  chunk // 2 for one of four to eight half-chunks; None: unchunked (MLP's docstring)."""
  c = chunk if n >= 4 * chunk else chunk // 2
  if not c or n < 4 * c:
    return None
  k = round(n / c)
  return k, n // k


def _apply(graphdef, state, x):
  for layer in nnx.merge(graphdef, state, copy=True):
    x = jax.nn.relu(layer(x))
  return x
