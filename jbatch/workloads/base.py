"""The workload interface: what is trained, kept apart from how batch size is studied.

A workload says what the model is, its per-example loss and metrics, its data
and how an example counts, and what its target means; the engine, the probes
and every study know nothing else about it. jbatch's own models and datasets
are workloads made the same way (workloads/builtin.py), and a user's comes
from `--config.workload=FILE.py:NAME` (workloads/user.py). Smaller than
AlgoPerf's `Workload` (init_model_fn, model_fn, per-example loss_fn, input
queue, target) and init2winit's (Model, DEFAULT_HPARAMS):

  model(seed)           -> a flax.nnx.Module (may also take platform=: 'cpu', 'gpu')
  loss(prediction, y)   -> (n,) one loss per example
  data()                -> Dataset: train / test (/ validation) arrays, `splits(...)`
  metrics               {name: fn(prediction, y) -> (n,) per-example values}, averaged
                        over examples exactly (sums over steps and devices)
  higher_is_better      the metric names a target must reach from below
  apply(model, x, train) -> prediction (default: model(x))
  target                the default target {metric, value, split}
  units_per_example, unit   what one example counts for (e.g. 256 tokens)
  torch_twin(model)     -> (torch module with the model's weights, torch per-example loss)
  head                  the attribute of the output layer, fresh for a pre-trained start
"""

import dataclasses
import inspect
from typing import Callable

import numpy as np

from jbatch.data.dataset import Dataset


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: compiled programs key on it
class Workload:
  name: str
  model: Callable
  loss: Callable
  data: Callable
  metrics: dict = dataclasses.field(default_factory=dict)
  higher_is_better: tuple = ("acc",)
  apply: Callable | None = None
  target: dict | None = None
  units_per_example: int = 1
  unit: str = "example"
  torch_twin: Callable | None = None
  head: str | None = None
  # Set by jbatch: the workload's origin ('builtin' or FILE.py:NAME / module:NAME) and the
  # hash of its code and workload_config, which every run id of it carries.
  source: str = "builtin"
  source_hash: str = ""

  def build_model(self, seed, platform):
    if "platform" in inspect.signature(self.model).parameters:
      return self.model(seed, platform=platform)
    return self.model(seed)

  def predict(self, model, x, train):
    return self.apply(model, x, train) if self.apply is not None else model(x)

  def metric_names(self):
    """What an evaluation reports: loss always, the workload's metrics, and error beside
    an accuracy."""
    names = ("loss",) + tuple(self.metrics)
    return names + (("error",) if "acc" in self.metrics else ())

  def direction(self, metric):
    return "max" if metric in self.higher_is_better else "min"


def splits(train, test, validation=None, name="data", num_classes=None):
  """A Dataset from (x, y) pairs of arrays; y may be class labels, real values or tokens."""
  as_array = lambda a: np.asarray(a)
  val = (None, None) if validation is None else tuple(map(as_array, validation))
  return Dataset(name, *map(as_array, train), *map(as_array, test), num_classes=num_classes,
                 val_x=val[0], val_y=val[1])
