"""What the layers with parameters tell the per-example gradient fast path.

While a Tape is recording, every Conv, Dense and (evaluation-mode) BatchNorm
call adds a perturbation to its output and keeps its input. The gradient of
the summed loss with respect to a zero perturbation is that layer's output
gradient per example (delta), and each layer's per-example weight-gradient
norm follows from its input and delta without forming the gradient
(probes/per_example.py). Outside a recording the layers run as usual and
this costs one Python lookup per call at trace time.
"""

import contextlib
import dataclasses

_CURRENT = []


@dataclasses.dataclass
class Entry:
  kind: str      # conv | dense | batchnorm
  static: dict   # the layer's settings that the norm computation needs (Python values)
  arrays: dict   # the layer's inputs that it needs (traced arrays)
  num_params: int


class Tape:

  def __init__(self, perturbations=None):
    self.perturbations = perturbations  # one array per entry, or None (shape pass)
    self.entries = []
    self.outputs = []

  def record(self, kind, y, static, arrays, num_params):
    """y (+ this entry's perturbation); remembers the layer."""
    i = len(self.entries)
    self.entries.append(Entry(kind, static, arrays, num_params))
    self.outputs.append(y)
    return y if self.perturbations is None else y + self.perturbations[i]


@contextlib.contextmanager
def recording(tape):
  _CURRENT.append(tape)
  try:
    yield tape
  finally:
    _CURRENT.pop()


def current():
  return _CURRENT[-1] if _CURRENT else None
