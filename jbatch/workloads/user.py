"""A user's workload from `--config.workload=FILE.py:NAME` or `pkg.module:NAME`.

NAME(config.workload_config) returns a Workload (workloads/base.py). Its run
ids carry a hash of its code (the file or module, and the modules beside it
that it imported) and of workload_config, so changed code never resumes old
records. `check` tries the workload on a few training examples before any work,
and every problem is one line that names the user's file and function.
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys

import numpy as np

from jbatch.data.dataset import Dataset
from jbatch.errors import UserError
from jbatch.workloads.base import Workload


def _first_line(exc):
  text = str(exc).strip().splitlines()
  return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _import(spec):
  """The module of FILE.py:NAME or pkg.module:NAME, and the folder its neighbours live in."""
  target = spec.rsplit(":", 1)[0]
  if target.endswith(".py") or os.sep in target:
    path = os.path.abspath(target)
    if not os.path.isfile(path):
      raise UserError(f"workload {spec}: file {target} does not exist; give FILE.py:NAME or "
                      "pkg.module:NAME")
    name = "jbatch_workload_" + hashlib.sha1(path.encode()).hexdigest()[:8]
    folder = os.path.dirname(path)
    _forget(folder)
    if folder not in sys.path:
      sys.path.insert(0, folder)  # its imports of the files beside it, at load or later
    try:
      module_spec = importlib.util.spec_from_file_location(name, path)
      module = importlib.util.module_from_spec(module_spec)
      sys.modules[name] = module
      module_spec.loader.exec_module(module)
    except Exception as e:
      sys.modules.pop(name, None)
      raise UserError(f"workload {spec}: {target} does not import: {_first_line(e)}") from e
    return module, folder
  try:
    found = importlib.util.find_spec(target)
    if found is None or not found.origin:
      raise ModuleNotFoundError(f"No module named {target!r}")
    folder = os.path.dirname(os.path.abspath(found.origin))
    _forget(folder)
    module = importlib.import_module(target)
  except ModuleNotFoundError as e:
    raise UserError(f"workload {spec}: no module {target!r} ({_first_line(e)}); give "
                    "FILE.py:NAME or an importable pkg.module:NAME") from e
  except Exception as e:
    raise UserError(f"workload {spec}: module {target} does not import: {_first_line(e)}") from e
  return module, folder


def _forget(folder):
  """Drops the modules of the files in `folder` (jbatch's aside), so that the workload's
  import reads them afresh and the ones it imports are the ones loaded after it."""
  for key, m in list(sys.modules.items()):
    if _in_folder(getattr(m, "__file__", None), folder):
      del sys.modules[key]


# jbatch's own code is never part of a workload's, wherever the workload's file lives.
_JBATCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _in_folder(path, folder):
  """Whether `path` is a Python file right beside the workload's (not in a folder below:
  a workload in a project's root must not take its virtual environment for its code)."""
  if not path or not path.endswith(".py"):
    return False
  path = os.path.abspath(path)
  return os.path.dirname(path) == folder and not path.startswith(_JBATCH)


def code_files(module, folder):
  """The module's file and every loaded module's from its folder (the files beside it that
  it imports)."""
  return {os.path.abspath(module.__file__)} | {
      os.path.abspath(m.__file__) for m in list(sys.modules.values())
      if _in_folder(getattr(m, "__file__", None), folder)}


def files_hash(files, folder):
  """sha1 over the files' names (relative to folder) and contents, in a fixed order."""
  digest = hashlib.sha1()
  for f in sorted(files):
    digest.update(os.path.relpath(f, folder).encode())
    with open(f, "rb") as fh:
      digest.update(fh.read())
  return digest.hexdigest()


def load(spec, workload_config):
  """The Workload of `spec` built from workload_config, with source and source_hash set."""
  if ":" not in spec:
    raise UserError(f"workload {spec!r}: give FILE.py:NAME or pkg.module:NAME (NAME returns a "
                    "jbatch.workloads.Workload)")
  module, folder = _import(spec)
  name = spec.rsplit(":", 1)[1]
  fn = getattr(module, name, None)
  if not callable(fn):
    raise UserError(f"workload {spec}: no callable {name!r} in {spec.rsplit(':', 1)[0]}; "
                    f"define {name}(config) returning a jbatch.workloads.Workload")
  try:
    workload = fn(workload_config)
  except UserError:
    raise
  except Exception as e:
    raise UserError(f"workload {spec}: {name}(workload_config) raised {_first_line(e)}") from e
  if not isinstance(workload, Workload):
    raise UserError(f"workload {spec}: {name}() returned {type(workload).__name__}, not a "
                    "jbatch.workloads.Workload")
  files = code_files(module, folder)
  _FILES[spec] = (folder, files)
  digest = hashlib.sha1(files_hash(files, folder).encode())
  digest.update(json.dumps(workload_config.to_dict(), sort_keys=True, default=str).encode())
  target = spec.rsplit(":", 1)[0]
  source = (os.path.normpath(target) if target.endswith(".py") or os.sep in target
            else target) + ":" + name  # a/../b.py:NAME as b.py:NAME, in records and reports
  return dataclasses.replace(workload, source=source, source_hash=digest.hexdigest()[:12])


_FILES = {}  # spec -> (folder, the files its last load read)


def current_code(spec):
  """A hash of the files the last load of `spec` read, as they are now (None: never
  loaded): a long-lived process loads a workload again when its code changed."""
  if spec not in _FILES:
    return None
  folder, files = _FILES[spec]
  try:
    return files_hash(files, folder)
  except OSError:
    return "gone"


def object_hash(workload):
  """A hash of an in-memory workload's code (Python API): the source of its functions."""
  digest = hashlib.sha1(workload.name.encode())
  for part in (workload.model, workload.loss, workload.data, workload.apply,
               *workload.metrics.values(), workload.metrics.keys()):
    try:
      digest.update(inspect.getsource(part).encode())
    except (TypeError, OSError):
      digest.update(repr(part).encode())
  return digest.hexdigest()[:12]


def check(workload, target=None, seed=0, precision="float32"):
  """Tries the workload on a few training examples: data, model, prediction, loss, metrics,
  target, precision. Returns the loaded Dataset."""
  import jax
  import jax.numpy as jnp
  where = f"workload {workload.source}"
  data = _call(where, "data()", workload.data)
  if not isinstance(data, Dataset):
    raise UserError(f"{where}: data() returned {type(data).__name__}; return "
                    "jbatch.workloads.splits(train=(x, y), test=(x, y))")
  for split, (x, y) in {"train": (data.train_x, data.train_y),
                        "test": (data.test_x, data.test_y),
                        "validation": (data.val_x, data.val_y)}.items():
    if x is None and split == "validation":
      continue
    if len(x) == 0:
      raise UserError(f"{where}: data() gives an empty {split} split; give it examples")
    if len(x) != len(y):
      raise UserError(f"{where}: the {split} split has {len(x)} inputs but {len(y)} targets")
    for what, a in (("inputs", x), ("targets", y)):
      if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
              or a.dtype == np.bool_):
        raise UserError(f"{where}: the {split} {what} are {a.dtype}; give float or integer "
                        "arrays")
    if x.shape[1:] != data.train_x.shape[1:] or y.shape[1:] != data.train_y.shape[1:]:
      raise UserError(f"{where}: {split} examples are {x.shape[1:]} -> {y.shape[1:]}, the "
                      f"training ones {data.train_x.shape[1:]} -> {data.train_y.shape[1:]}")
  model = _call(where, "model(seed)", lambda: workload.build_model(seed, jax.default_backend()))
  from flax import nnx
  if not isinstance(model, nnx.Module):
    raise UserError(f"{where}: model(seed) returned {type(model).__name__}, not a flax.nnx.Module")
  from jbatch.models import registry as model_registry
  try:
    model_registry.set_precision(model, precision)
  except UserError as e:
    raise UserError(f"{where}: {e}") from e
  k = min(4, len(data.train_x))
  x, y = jnp.asarray(data.train_x[:k]), jnp.asarray(data.train_y[:k])
  pred = _call(where, f"the model on {k} examples of shape {x.shape[1:]}",
               lambda: workload.predict(model, x, False))
  losses = _call(where, f"loss(prediction {getattr(pred, 'shape', '?')}, targets {y.shape}), "
                 "where the model's output does not fit the loss,",
                 lambda: workload.loss(pred, y))
  if getattr(losses, "shape", None) != (k,):
    raise UserError(f"{where}: loss() gave shape {getattr(losses, 'shape', type(losses))} for "
                    f"{k} examples; return one loss per example, shape ({k},)")
  if not np.all(np.isfinite(np.asarray(losses, np.float64))):
    raise UserError(f"{where}: the loss is not finite at the initial weights "
                    f"({np.asarray(losses)}); check the model's initialization and the loss")
  for name, fn in workload.metrics.items():
    value = _call(where, f"metric {name!r}", lambda: fn(pred, y))
    if getattr(value, "shape", None) != (k,):
      raise UserError(f"{where}: metric {name!r} gave shape {getattr(value, 'shape', '?')}; "
                      f"return one value per example, shape ({k},)")
  if target is not None and target not in workload.metric_names():
    raise UserError(f"{where}: target metric {target!r} is not one it reports; choose one of "
                    f"{', '.join(workload.metric_names())}")
  return data


def _call(where, what, fn):
  try:
    return fn()
  except UserError:
    raise
  except Exception as e:
    raise UserError(f"{where}: {what} raised {_first_line(e)}") from e
