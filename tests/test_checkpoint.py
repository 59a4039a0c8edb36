"""Orbax checkpoints: a pre-trained start with a new head, and every way a start can be wrong."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jbatch.errors import UserError
from jbatch.models.cnn import CNN
from jbatch.train import checkpoint, state as state_lib


def _state(num_classes, channels=(4, 8), seed=0):
  model = CNN((12, 12, 1), num_classes, channels=channels, hidden=16, batchnorm=True,
              rngs=nnx.Rngs(seed))
  return state_lib.create(model, optax.sgd(0.1, momentum=0.9))[1]


def _save_finished(directory, state):
  checkpoint.RunCheckpoints(str(directory), every=1).maybe_save(
      3, 3, state, {"finished": True, "history": [], "epochs_done": 3, "train_seconds": 1.0})


def test_restore_into_a_model_with_a_new_head(tmp_path):
  saved = _state(10, seed=1)
  saved.model_state["norms"][0]["mean"].set_value(jax.numpy.full((4,), 0.5))  # non-default stats
  _save_finished(tmp_path / "run", saved)
  directory, meta = checkpoint.find_finished(str(tmp_path / "run"))
  assert meta["epochs_done"] == 3
  live = _state(5, seed=2)
  params, model_state, fresh = checkpoint.load_weights(directory, live.params, live.model_state,
                                                       head="out")
  assert sorted(fresh) == ["out/bias", "out/kernel"]
  np.testing.assert_array_equal(params["convs"][1]["kernel"][...],
                                saved.params["convs"][1]["kernel"][...])
  np.testing.assert_array_equal(params["dense"]["kernel"][...], saved.params["dense"]["kernel"][...])
  np.testing.assert_array_equal(model_state["norms"][0]["mean"][...], np.full(4, 0.5))
  # The new head is the live model's own initialization, not the saved one.
  np.testing.assert_array_equal(params["out"]["kernel"][...], live.params["out"]["kernel"][...])
  assert params["out"]["kernel"][...].shape == (16, 5)


def test_same_classes_restores_everything(tmp_path):
  saved = _state(10, seed=1)
  _save_finished(tmp_path / "run", saved)
  live = _state(10, seed=2)
  params, _, fresh = checkpoint.load_weights(str(tmp_path / "run"), live.params,
                                             live.model_state, head="out")
  assert fresh == []
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(saved.params)):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_model_is_refused(tmp_path):
  _save_finished(tmp_path / "run", _state(10, channels=(4, 8)))
  live = _state(10, channels=(4, 6))
  with pytest.raises(UserError, match="does not match the model"):
    checkpoint.load_weights(str(tmp_path / "run"), live.params, live.model_state, head="out")


def test_missing_or_unfinished_checkpoints(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    checkpoint.find_finished(str(tmp_path / "nowhere"))
  checkpoint.RunCheckpoints(str(tmp_path / "w" / "checkpoints" / "a"), every=1).maybe_save(
      1, 1, _state(10), {"finished": False})
  with pytest.raises(UserError, match="no finished jbatch checkpoint"):
    checkpoint.find_finished(str(tmp_path / "w"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no finished"):
    checkpoint.find_finished(str(tmp_path / "empty"))


def test_resume_restores_the_latest(tmp_path):
  ck = checkpoint.RunCheckpoints(str(tmp_path / "r"), every=2)
  s = _state(10)
  assert ck.restore_latest(s) is None
  ck.maybe_save(1, 1, s, {"finished": False})  # not a multiple of 2: skipped
  assert ck.restore_latest(s) is None
  s2 = _state(10, seed=5)
  ck.maybe_save(2, 2, s2, {"finished": False, "epochs_done": 2})
  got, meta = ck.restore_latest(s)
  assert meta["epochs_done"] == 2
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(s2)):
    np.testing.assert_array_equal(a, b)
