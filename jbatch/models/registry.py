"""Model names -> Flax NNX modules, built from the config's section of the same name."""

import jax
from flax import nnx

from jbatch.errors import UserError
from jbatch.models.cnn import CNN
from jbatch.models.mlp import MLP
from jbatch.models.mobilenet_v2 import MobileNetV2
from jbatch.models.resnet import ResNet18


def _mlp(cfg, input_shape, num_classes, rngs):
  features = 1
  for d in input_shape:
    features *= d
  return MLP(features, num_classes, depth=cfg.depth, width=cfg.width, batchnorm=cfg.batchnorm,
             rngs=rngs)


def _cnn(cfg, input_shape, num_classes, rngs):
  if len(input_shape) != 3:
    raise UserError(f"model 'cnn' needs images (H, W, C), the dataset gives {input_shape}; "
                    "use --config.model=mlp")
  return CNN(input_shape, num_classes, channels=tuple(cfg.channels), hidden=cfg.hidden,
             batchnorm=cfg.batchnorm, rngs=rngs)


def _needs_rgb(name, input_shape):
  if len(input_shape) != 3 or input_shape[-1] != 3:
    raise UserError(f"model {name!r} needs RGB images (H, W, 3), the dataset gives "
                    f"{input_shape}; pick an image dataset such as cifar10 or synthetic "
                    "with image_shape=(32, 32, 3)")


def _mobilenet_v2(cfg, input_shape, num_classes, rngs):
  _needs_rgb("mobilenet_v2", input_shape)
  return MobileNetV2(num_classes, variant=cfg.variant, width=cfg.width, rngs=rngs)


def _resnet18(cfg, input_shape, num_classes, rngs):
  _needs_rgb("resnet18", input_shape)
  return ResNet18(num_classes, variant=cfg.variant, rngs=rngs)


MODELS = {"mlp": _mlp, "cnn": _cnn, "mobilenet_v2": _mobilenet_v2, "resnet18": _resnet18}


def check_name(name):
  if name not in MODELS:
    raise UserError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")


def build(config, input_shape, num_classes, seed):
  """The model named by config.model, its settings read from config.<model>."""
  check_name(config.model)
  section = config.get(config.model)
  return MODELS[config.model](section, tuple(input_shape), num_classes, nnx.Rngs(seed))


def count_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
