"""Workloads: what is trained (workloads/base.py). `from_config` gives the config's
workload, jbatch's own (config.model on config.dataset) or a user's
(config.workload); `check` validates it before any work; `load_data` gives its
splits with train_subset and validation_examples applied, once per process."""

import json
import weakref

from jbatch.data import registry as data_registry
from jbatch.workloads import builtin, user
from jbatch.workloads.base import Workload, splits  # noqa: F401 (the public interface)

_USER = {}  # (spec, workload_config) -> Workload: validation and the run share one load
_RAW = weakref.WeakKeyDictionary()  # workload -> its checked data, as data() gives it
_DATA = weakref.WeakKeyDictionary()  # workload -> {(train_subset, held out): Dataset}


def from_config(config):
  spec = config.get("workload", "")
  if not spec:
    return builtin.from_config(config)
  key = (spec, json.dumps(config.workload_config.to_dict(), sort_keys=True, default=str))
  if key not in _USER or _USER[key][0] != user.current_code(spec):
    workload = user.load(spec, config.workload_config)
    _USER[key] = (user.current_code(spec), workload)
  return _USER[key][1]


def is_builtin(workload):
  return workload.source == "builtin"


def record_fields(workload):
  """What every record says of its workload."""
  return {"workload": workload.name, "workload_source": workload.source,
          "workload_hash": workload.source_hash or None,
          "units_per_example": workload.units_per_example, "unit": workload.unit}


def bind(config, workload):
  """The config a study runs with: a user workload's origin and code hash in it, so that
  its run ids and records carry them; a built-in's config unchanged (its ids with it)."""
  if is_builtin(workload):
    return config
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.workload = workload.source
    cfg.workload_hash = workload.source_hash
  return cfg


def check(config, workload):
  """The training-set size (None where only a load would tell), after every check that
  can run before any work. A user workload is tried on a few examples here."""
  if is_builtin(workload):
    return data_registry.check(config)
  target = config.target.metric or None
  return load_data(config, workload, target=target).num_train


def load_data(config, workload, target=None):
  """The workload's splits with train_subset and validation_examples applied."""
  key = (config.get("train_subset", 0), config.get("validation_examples", 0))
  cached = _DATA.setdefault(workload, {})
  if key not in cached:
    if workload not in _RAW:
      _RAW[workload] = (workload.data() if is_builtin(workload) else
                        user.check(workload, target=target, seed=config.seed,
                                   precision=config.get("precision", "float32")))
    cached[key] = data_registry.subset(config, _RAW[workload], workload.name)
  return cached[key]


def remember_data(workload, data):
  """data: what workload.data() gave, already checked (the Python API's)."""
  _RAW[workload] = data


