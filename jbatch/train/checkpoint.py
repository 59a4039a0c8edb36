"""Orbax checkpoints: a run in progress resumes from its last one; a finished run's
weights can start another run, on another dataset, with a new classifier head.

A run's checkpoints live in <workdir>/checkpoints/<run id>/<steps done>/ with
two items: `state` (the whole TrainState) and `meta` (JSON: the curves so
far, the model, whether the run finished). Orbax writes each step to a
temporary folder and renames it when complete, so a kill during a save
leaves the previous checkpoint intact.
"""

import glob
import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jbatch.errors import UserError


def run_dir(workdir, run_id):
  return os.path.join(os.path.abspath(workdir), "checkpoints", run_id.replace("/", "_"))


def _manager(directory, create=True):
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=create,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class RunCheckpoints:
  """Saves every `every` epochs and at the end; restores the latest into a live state."""

  def __init__(self, directory, every):
    self.directory, self.every = directory, every
    self._mgr = _manager(directory)

  def restore_latest(self, state):
    """(state, meta) from the newest checkpoint, placed like `state`; None if there is none."""
    step = self._mgr.latest_step()
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    got = self._mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return got.state, got.meta

  def maybe_save(self, steps_done, epochs_done, state, meta):
    """At the end of training, and every `every` whole epochs; a checkpoint is named by
    the steps done (a run stopped at a target may end inside an epoch)."""
    whole = float(epochs_done).is_integer()
    if meta.get("finished") or (self.every and whole and int(epochs_done) % self.every == 0):
      self._mgr.save(steps_done, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))


def _meta(directory):
  mgr = _manager(directory, create=False)
  step = mgr.latest_step()
  if step is None:
    return None
  return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def find_finished(path):
  """(checkpoint folder, meta) of the one finished run at `path`: a run's checkpoint
  folder, or a run folder whose checkpoints/ holds exactly one finished run."""
  if not os.path.isdir(path):
    raise UserError(f"init_checkpoint {path} does not exist; give a run folder written by "
                    "jbatch (e.g. runs/pretrain) or one of its checkpoints/<run> folders")
  candidates = sorted(glob.glob(os.path.join(path, "checkpoints", "*"))) or [path]
  finished = []
  for d in candidates:
    try:
      meta = _meta(d)
    except Exception:  # not an Orbax folder, or a damaged one
      meta = None
    if meta and meta.get("finished"):
      finished.append((d, meta))
  if not finished:
    raise UserError(f"no finished jbatch checkpoint under {path}; run the pre-training "
                    "config to the end first")
  if len(finished) > 1:
    names = ", ".join(os.path.basename(d) for d, _ in finished)
    raise UserError(f"{path} holds {len(finished)} finished runs ({names}); point "
                    "init_checkpoint at one of its checkpoints/<run> folders")
  return finished[0]


def saved_state(directory):
  """The newest checkpoint's state onto this process's first device, however many devices
  or processes saved it (a run on 8 devices can start one on 1)."""
  mgr = _manager(directory, create=False)
  step = mgr.latest_step()
  meta = ocp.StandardCheckpointer().metadata(os.path.join(os.path.abspath(directory), str(step),
                                                          "state"))
  tree = getattr(meta.item_metadata, "tree", meta.item_metadata)
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), tree)
  return mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract))).state


def _flat(tree):
  """{'a/0/kernel': array} from a nested dict; Orbax's {'value': x} wrappers dropped."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    if keys and keys[-1] == "value":
      keys = keys[:-1]
    out["/".join(keys)] = leaf
  return out


def load_weights(directory, params, model_state, head):
  """params and model_state (nnx.State) with the checkpoint's values put in.

  Leaves under `head` (the classifier) whose shape differs are left as
  initialized: a new number of classes gets a fresh head. Any other
  difference means the checkpoint is of another model: UserError.
  Returns (params, model_state, names of re-initialized leaves).
  """
  saved = saved_state(directory)
  fresh_heads = []
  out = []
  for part, live in (("params", params), ("model_state", model_state)):
    old, new = _flat(saved[part]), _flat(live.to_pure_dict())
    if set(old) != set(new):
      diff = sorted(set(old) ^ set(new))[:3]
      raise UserError(f"checkpoint {directory} does not match the model: its {part} differ "
                      f"at {diff}; use the same model and settings as the pre-training run")
    merged = {}
    for name, value in new.items():
      if old[name].shape == value.shape:
        merged[name] = jax.numpy.asarray(old[name], value.dtype)
      elif name.split("/")[0] == head:
        merged[name] = value
        fresh_heads.append(name)
      else:
        raise UserError(f"checkpoint {directory} does not match the model: {name} has shape "
                        f"{tuple(old[name].shape)} there and {tuple(value.shape)} here; use "
                        "the same model and settings as the pre-training run")
    pure = live.to_pure_dict()
    treedef = jax.tree_util.tree_structure(pure)  # same leaf order as _flat
    state = jax.tree.map(lambda x: x, live)  # a copy: replace_by_pure_dict works in place
    nnx.replace_by_pure_dict(state, treedef.unflatten([merged[n] for n in new]))
    out.append(state)
  return out[0], out[1], fresh_heads
