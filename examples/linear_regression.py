"""A user workload written only against jbatch's public interface: linear regression.

y = x . w* + noise, x ~ N(0, I_d), w* = (1, ..., 1), the noise's standard deviation
`noise`; the model is one nnx.Linear without bias starting at zero; the loss is the
squared error 0.5 r^2 per example. Its noise scale is known in closed form
(STUDIES.md S5): at |w - w*|^2 = t, B_simple = (d + 1) + d noise^2 / t, and a
validation loss L* means t = 2 L* - noise^2, which `b_simple_at_loss` gives.

  jbatch --config=experiments/critical_batch_linreg.py --workdir=runs/linreg
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jbatch.workloads import Workload, splits


def b_simple_at_loss(dim, noise, loss):
  """The closed-form B_simple where the population loss is `loss`."""
  return (dim + 1) + dim * noise ** 2 / (2 * loss - noise ** 2)


def workload(config):
  dim, noise = int(config.get("dim", 8)), float(config.get("noise", 1.0))
  rng = np.random.default_rng(int(config.get("seed", 0)))
  w_star = np.ones(dim, np.float32)

  def sample(n):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x, (x @ w_star + noise * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

  train = sample(int(config.get("num_train", 50_000)))
  validation = sample(int(config.get("num_validation", 10_000)))
  test = sample(int(config.get("num_validation", 10_000)))

  def model(seed):
    return nnx.Linear(dim, 1, use_bias=False, kernel_init=nnx.initializers.zeros,
                      rngs=nnx.Rngs(seed))

  return Workload(
      name=f"linear_regression_d{dim}_noise{noise:g}",
      model=model,
      loss=lambda prediction, y: 0.5 * jnp.square(prediction[:, 0] - y),
      data=lambda: splits(train=train, test=test, validation=validation,
                          name="linear_regression"),
      # halfway from the start (0.5 (d + noise^2)) to the noise floor (0.5 noise^2) in |e|^2
      target={"metric": "loss", "value": 0.5 * noise ** 2 + 0.1 * dim, "split": "validation"})
