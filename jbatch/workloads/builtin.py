"""jbatch's own workloads: config.model (models/registry.py) on config.dataset
(data/registry.py), classifiers with softmax cross-entropy, made through the same
interface as a user's (workloads/base.py)."""

import functools

import jax
import jax.numpy as jnp
import optax

from jbatch.data import registry as data_registry
from jbatch.models import registry as model_registry
from jbatch.workloads.base import Workload

# Models with a PyTorch twin in torch_ref/models.py.
TORCH_TWINS = ("mlp", "cnn", "mobilenet_v2")


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy against one-hot labels.

  The same values as optax's integer-label form; its gradient is a dense
  product instead of a scatter, which XLA constant-folds at compile time in
  time proportional to the batch (minutes for batches of millions, as the
  largest-batch search compiles).
  """
  logits = logits.astype(jnp.float32)  # bfloat16 logits (precision) lose the loss's digits
  return optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]))


def accuracy(logits, labels):
  return jnp.argmax(logits, -1) == labels


def classifier_apply(model, x, train):
  return model(x, train=train)  # jbatch's models switch BatchNorm by argument


CLASSIFIER_METRICS = {"acc": accuracy}
# What a step computes for any of jbatch's classifiers (an engine's default workload).
CLASSIFIER = Workload(name="classifier", model=None, loss=cross_entropy, data=None,
                      metrics=CLASSIFIER_METRICS, apply=classifier_apply)


def from_config(config, data=None):
  """The workload of config.model on config.dataset; nothing is loaded until data().
  data: another built-in workload's data() to share (the same dataset, loaded once)."""
  model_registry.check(config)
  data_registry.check(config)
  cfg = config.copy_and_resolve_references()
  data = data or functools.cache(lambda: data_registry.load_source(cfg))

  def model(seed, platform=None):
    # The model's input shape and classes are the dataset's (a cached load).
    d = data()
    return model_registry.build(cfg, d.input_shape, d.num_classes, seed, platform)

  return Workload(
      name=f"{config.model}/{config.dataset}", model=model, loss=cross_entropy, data=data,
      metrics=CLASSIFIER_METRICS, apply=classifier_apply,
      torch_twin=(functools.partial(_torch_twin, cfg, data) if config.model in TORCH_TWINS
                  else None),
      head=model_registry.HEADS[config.model])


def _torch_twin(config, data, model):
  """The torch_ref twin of a built-in model: MLP and CNN with the model's weights copied,
  MobileNetV2 with PyTorch's own initialization (no copy yet)."""
  import torch.nn.functional as F
  from jbatch.models.cnn import CNN
  from jbatch.models.mlp import MLP
  from jbatch.torch_ref import models as torch_models
  d = data()
  twin = torch_models.build(config, d.input_shape, d.num_classes)
  if isinstance(model, (MLP, CNN)):
    torch_models.copy_from_flax(twin, model)
  return twin, lambda logits, y: F.cross_entropy(logits.float(), y, reduction="none")
