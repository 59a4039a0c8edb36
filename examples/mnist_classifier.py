"""A user's own classifier on MNIST, written only against jbatch's public interface and
plain flax.nnx layers (none of jbatch's): an MLP, the MNIST idx files read here, a
PyTorch twin for the throughput study's torch variants.

  jbatch --config=experiments/mnist_classifier.py --workdir=runs/mnist_classifier

Fields: hidden (width), data_dir (default $JBATCH_DATA_DIR), validation (the last N
training images held out), seed.
"""

import gzip
import os

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jbatch.workloads import Workload, splits


def _idx(path):
  with gzip.open(path, "rb") as f:
    data = f.read()
  dims = int(data[3])
  shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
  return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _mnist(folder, validation):
  read = lambda name: _idx(os.path.join(folder, name))
  train_x, test_x = read("train-images-idx3-ubyte.gz"), read("t10k-images-idx3-ubyte.gz")
  scale = lambda x: ((x.reshape(len(x), -1) / 255.0 - 0.1307) / 0.3081).astype(np.float32)
  train_x, test_x = scale(train_x), scale(test_x)
  train_y = read("train-labels-idx1-ubyte.gz").astype(np.int32)
  test_y = read("t10k-labels-idx1-ubyte.gz").astype(np.int32)
  keep = len(train_x) - validation
  return splits(train=(train_x[:keep], train_y[:keep]), test=(test_x, test_y),
                validation=(train_x[keep:], train_y[keep:]), name="mnist", num_classes=10)


class MLP(nnx.Module):

  def __init__(self, hidden, rngs):
    self.hidden = nnx.Linear(784, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def torch_twin(model):
  """The same MLP in PyTorch with the Flax model's weights; its per-example loss."""
  import torch
  import torch.nn.functional as F
  twin = torch.nn.Sequential(torch.nn.Linear(784, model.hidden.out_features), torch.nn.ReLU(),
                             torch.nn.Linear(model.hidden.out_features, 10))
  for dst, src in ((twin[0], model.hidden), (twin[2], model.out)):
    dst.weight.data = torch.from_numpy(np.asarray(src.kernel[...]).T.copy())
    dst.bias.data = torch.from_numpy(np.asarray(src.bias[...]).copy())
  return twin, lambda logits, y: F.cross_entropy(logits, y, reduction="none")


def workload(config):
  folder = os.path.join(config.get("data_dir", "") or os.environ.get("JBATCH_DATA_DIR", ""),
                        "mnist")
  if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")):
    raise FileNotFoundError(f"no MNIST idx files in {folder!r}; set data_dir or "
                            "$JBATCH_DATA_DIR")
  hidden, validation = int(config.get("hidden", 128)), int(config.get("validation", 5_000))
  data = _mnist(folder, validation)
  return Workload(
      name=f"mnist_mlp{hidden}",
      model=lambda seed: MLP(hidden, nnx.Rngs(seed)),
      loss=optax.softmax_cross_entropy_with_integer_labels,
      data=lambda: data,
      metrics={"acc": lambda logits, y: jnp.argmax(logits, -1) == y},
      target={"metric": "error", "value": 0.05, "split": "validation"},
      torch_twin=torch_twin,
      head="out")
