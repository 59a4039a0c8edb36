"""A dense layer's product whose weight gradient runs at the CPU's matrix-product rate.

The weight gradient of y = x @ w is x.T @ g: a product that contracts the batch, 64 x n
times n x 64 for the S4 MLP. XLA's CPU kernels for it (Eigen's, or YNNPACK's after a
transposing copy) run at 60-90 GFLOP/s on a 2-core CPU, a third of the forward
product's rate and of what PyTorch's sgemm gets for the same shape; at batch 10,000
and 20,000 the seven weight gradients were half of a train step, and the reason
torch.compile was faster there. Cut into blocks of ROWS rows, each transposed once
and multiplied as a batch of short products, the same sum runs 1.1-1.6x faster
(BENCHMARKS.md, "Large batches on the CPU"). The blocks transposed are g's, not x's (g
has just been written by the ReLU's backward mask and is likely still in cache when it
is copied; x is an activation of the forward pass): with that and blocks of 64 rows
rather than 256, a train step of 10,000 rows is 1.2x faster
(BENCHMARKS.md, "The weight gradient from g's blocks"). The values are those of x.T @ g up
to the order of the float32 sums.
"""

import jax
import jax.numpy as jnp
from jax import lax

ROWS = 64  # rows per block: 64 x 64 floats per operand, inside a core's L1 and L2
# Blocked from this many rows: a train step of the S4 MLP was 1.15x faster blocked at batch
# 1,000 and 1.05x at 256, but 0.88x at 100, where a whole product fits in cache anyway.
MIN_ROWS = 512
_PLAIN = (((1,), (0,)), ((), ()))


def dot_general(x, w, dimension_numbers, precision=None, **kwargs):
  """lax.dot_general with the blocked weight gradient for a 2-D batch of MIN_ROWS rows or
  more (nnx.Linear's dot_general hook); anything else is lax.dot_general itself."""
  if x.ndim == 2 and x.shape[0] >= MIN_ROWS and dimension_numbers == _PLAIN and not kwargs.get(
      "preferred_element_type"):
    return _matmul(x, w)
  return lax.dot_general(x, w, dimension_numbers, precision=precision, **kwargs)


@jax.custom_vjp
def _matmul(x, w):
  return x @ w


def _forward(x, w):
  return x @ w, (x, w)


def _backward(residuals, g):
  x, w = residuals
  return g @ w.T, weight_gradient(x, g).astype(w.dtype)


_matmul.defvjp(_forward, _backward)


def weight_gradient(x, g):
  """x.T @ g as (g.T @ x).T, a sum over blocks of ROWS rows of g's transposed blocks
  times x's (the rows past the last whole block: one plain product). The barrier keeps
  the blocks' transpose a real copy: folded into the product as a layout, it sends the
  product back to the slow kernel."""
  n = g.shape[0]
  blocks = n // ROWS
  m = blocks * ROWS
  gt = lax.optimization_barrier(jnp.swapaxes(g[:m].reshape(blocks, ROWS, g.shape[1]), 1, 2))
  # float32 sums: a bfloat16 run (precision) adds hundreds of blocks
  out = jnp.matmul(gt, x[:m].reshape(blocks, ROWS, x.shape[1]),
                   preferred_element_type=jnp.float32).sum(0)
  if m < n:
    out += jnp.matmul(g[m:].T, x[m:], preferred_element_type=jnp.float32)
  return out.T
