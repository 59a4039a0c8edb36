"""The train state as plain pytrees: the model is split once, steps see only arrays."""

import dataclasses

import jax
from flax import nnx


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  params: nnx.State
  model_state: nnx.State  # everything that is not a Param: BatchNorm statistics
  opt_state: object
  step: jax.Array


def create(model, tx):
  """(graphdef, state): the graphdef is static and closed over by the compiled steps."""
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  state = TrainState(params, model_state, tx.init(params), jax.numpy.zeros((), jax.numpy.int32))
  return graphdef, state


def to_model(graphdef, state):
  return nnx.merge(graphdef, state.params, state.model_state)
