"""precision=bfloat16: matrix products and convolutions in bfloat16, everything kept in
float32, and a short run that agrees with float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jbatch import config as config_lib
from jbatch.data import synthetic
from jbatch.errors import UserError
from jbatch.models import registry
from jbatch.train import loop, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine


def _config(model, precision):
  c = config_lib.base()
  c.model, c.precision = model, precision
  c.cnn.channels, c.cnn.hidden = (8, 16), 32
  c.optimizer.learning_rate = 0.05
  return c


def _dataset(model):
  shape = (12, 12, 1) if model == "cnn" else (32,)
  return synthetic.make(1024, 64, shape, 10, seed=0)


def _train(model, precision, epochs=3):
  c, ds = _config(model, precision), _dataset(model)
  eng = Engine(registry.build(c, ds.input_shape, 10, seed=0, platform="cpu"),
               optim.make(c.optimizer), parallel.make_mesh("cpu", 1))
  x, y = eng.put(ds.train_x, ds.train_y)
  epoch = eng.fused_epoch(plan_lib.make(ds.num_train, 64, "drop", epochs=1))
  state = eng.state
  losses = [loop.summarize(eng.evaluator(ds.num_train, 256)(eng.weights(), x, y))["loss"]]
  for e in range(epochs):
    state, m = epoch(state, x, y, loop.epoch_key(0, e))
    losses.append(loop.summarize(m)["loss"])
  return eng, state, losses, (x, y)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_bfloat16_agrees_with_float32_and_keeps_its_state_in_float32(model):
  e32, s32, l32, _ = _train(model, "float32")
  eng, s16, l16, (x, y) = _train(model, "bfloat16")
  # The same start evaluated both ways: bfloat16's 8-bit mantissa (steps of 0.4%) moves
  # the loss by under 1%. After three epochs of SGD the rounding has compounded, but
  # both reach the same loss within 5%, and bfloat16 does learn.
  assert l16[0] == pytest.approx(l32[0], rel=0.01)  # the start (evaluation mode)
  assert l16[0] != l32[0]  # computed in bfloat16 indeed
  np.testing.assert_allclose(l16[1:], l32[1:], rtol=0.05)  # each epoch's mean training loss
  assert l16[-1] < l16[1] - 0.1
  for leaf in jax.tree.leaves((s16.params, s16.opt_state, s16.model_state)):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  # The step's matrix products (and the CNN's im2col convolutions, which are matrix
  # products) take bfloat16 operands; float32 ones remain only for the loss.
  text = jax.jit(eng.train_step).lower(s16, x[:64], y[:64]).as_text()
  dots = [l for l in text.splitlines() if "dot_general" in l]
  assert dots and all("bf16" in l for l in dots), [l for l in dots if "bf16" not in l][:3]


def test_float32_has_no_bfloat16_and_an_unknown_precision_is_refused():
  c, ds = _config("mlp", "float32"), _dataset("mlp")
  eng = Engine(registry.build(c, ds.input_shape, 10, seed=0, platform="cpu"),
               optim.make(c.optimizer), parallel.make_mesh("cpu", 1))
  xb, yb = jnp.asarray(ds.train_x[:64]), jnp.asarray(ds.train_y[:64])
  assert "bf16" not in jax.jit(eng.train_step).lower(eng.state, xb, yb).as_text()
  with pytest.raises(UserError, match="unknown precision 'fp8'"):
    registry.check(_config("mlp", "fp8"))
