"""Model names -> Flax NNX modules, built from the config's section of the same name."""

import jax
import jax.numpy as jnp
from flax import nnx

from jbatch import cpu_memory
from jbatch.errors import UserError
from jbatch.models import conv, cpu_matmul
from jbatch.models.cnn import CNN
from jbatch.models.layers import Dense
from jbatch.models.mlp import MLP
from jbatch.models.mobilenet_v2 import MobileNetV2
from jbatch.models.resnet import ResNet18
from jbatch.models.vgg import STAGES, VGG


def _mlp(cfg, input_shape, num_classes, conv_impl, rngs):
  features = 1
  for d in input_shape:
    features *= d
  return MLP(features, num_classes, depth=cfg.depth, width=cfg.width, batchnorm=cfg.batchnorm,
             rngs=rngs)


def _cnn(cfg, input_shape, num_classes, conv_impl, rngs):
  if len(input_shape) != 3:
    raise UserError(f"model 'cnn' needs images (H, W, C), the dataset gives {input_shape}; "
                    "use --config.model=mlp")
  return CNN(input_shape, num_classes, channels=tuple(cfg.channels), hidden=cfg.hidden,
             batchnorm=cfg.batchnorm, conv_impl=conv_impl, rngs=rngs)


def _needs_rgb(name, input_shape):
  if len(input_shape) != 3 or input_shape[-1] != 3:
    raise UserError(f"model {name!r} needs RGB images (H, W, 3), the dataset gives "
                    f"{input_shape}; pick an image dataset such as cifar10 or synthetic "
                    "with image_shape=(32, 32, 3)")


def _mobilenet_v2(cfg, input_shape, num_classes, conv_impl, rngs):
  _needs_rgb("mobilenet_v2", input_shape)
  return MobileNetV2(num_classes, variant=cfg.variant, width=cfg.width, conv_impl=conv_impl,
                     rngs=rngs)


def _resnet18(cfg, input_shape, num_classes, conv_impl, rngs):
  _needs_rgb("resnet18", input_shape)
  return ResNet18(num_classes, variant=cfg.variant, conv_impl=conv_impl, rngs=rngs)


def _vgg(cfg, input_shape, num_classes, conv_impl, rngs):
  if len(input_shape) != 3:
    raise UserError(f"model 'vgg' needs images (H, W, C), the dataset gives {input_shape}; "
                    "use --config.model=mlp")
  if cfg.depth not in STAGES:
    raise UserError(f"vgg.depth={cfg.depth}; choose one of {', '.join(map(str, sorted(STAGES)))}")
  return VGG(input_shape, num_classes, depth=cfg.depth, batchnorm=cfg.batchnorm, width=cfg.width,
             conv_impl=conv_impl, rngs=rngs)


MODELS = {"mlp": _mlp, "cnn": _cnn, "mobilenet_v2": _mobilenet_v2, "resnet18": _resnet18,
          "vgg": _vgg}
# The classifier layer of each model: re-initialized when a pre-trained start has
# another number of classes.
HEADS = {"mlp": "out", "cnn": "out", "mobilenet_v2": "classifier", "resnet18": "fc",
         "vgg": "classifier"}


# rows: a chunk's activations (6 x 8192 x 64 floats) stay in the last-level cache; the full
# S4 batch ran 1.09x faster in chunks of 8,192 than of 4,096 (BENCHMARKS.md, 2026-12-07)
MLP_CPU_CHUNK = 8192
# What matrix products and convolutions compute in; None: their inputs' dtype (float32).
PRECISIONS = {"float32": None, "bfloat16": jnp.bfloat16}


def check(config):
  if config.model not in MODELS:
    raise UserError(f"unknown model {config.model!r}; choose one of {', '.join(sorted(MODELS))}")
  if config.get("conv_impl", "auto") not in conv.IMPLS:
    raise UserError(f"unknown conv_impl {config.conv_impl!r}; choose one of "
                    f"{', '.join(conv.IMPLS)}")
  if config.get("precision", "float32") not in PRECISIONS:
    raise UserError(f"unknown precision {config.precision!r}; choose one of "
                    f"{', '.join(PRECISIONS)}")


def conv_impl(config, platform):
  """The convolution formulation a run on `platform` (cpu, gpu, ...) uses."""
  return conv.resolve(config.get("conv_impl", "auto"), platform)


def conv_fields(config, platform):
  """What a record says about its convolutions: the formulation and why (none for mlp)."""
  if config.model == "mlp":
    return {}
  asked = config.get("conv_impl", "auto")
  impl = conv_impl(config, platform)
  why = (f"set by conv_impl={asked}" if asked != "auto" else
         f"auto on {platform}: " + (conv.CPU_REASON if platform == "cpu" else conv.GPU_REASON))
  return {"conv_impl": impl, "conv_impl_reason": why}


def build(config, input_shape, num_classes, seed, platform=None):
  """The model named by config.model, its settings read from config.<model>, with the
  convolution formulation for `platform` (default: JAX's default backend)."""
  check(config)
  platform = platform or jax.default_backend()
  section = config.get(config.model)
  model = MODELS[config.model](section, tuple(input_shape), num_classes,
                               conv_impl(config, platform), nnx.Rngs(seed))
  if platform == "cpu":
    if isinstance(model, MLP):
      model.chunk = MLP_CPU_CHUNK  # large training batches in cache-sized chunks (mlp.py)
      # and their whole-batch activations (float32 at most) in pieces the heap reuses
      model.piece_rows = cpu_memory.HEAP_BYTES // (4 * model.out.in_features)
    for _, module in nnx.iter_modules(model):
      if isinstance(module, Dense):
        module.dot_general = cpu_matmul.dot_general  # weight gradients in blocks
  return set_precision(model, config.get("precision", "float32"))


# Layers whose products set_precision reaches (their `dtype` is the computation's), and
# layers that keep float32 by design (normalizations); jbatch's own are in both families.
PRODUCT_LAYERS = (Dense, conv.Conv, nnx.Linear, nnx.Conv, nnx.ConvTranspose, nnx.Einsum,
                  nnx.LinearGeneral, nnx.Embed)
FLOAT32_LAYERS = (nnx.BatchNorm, nnx.LayerNorm, nnx.RMSNorm, nnx.GroupNorm)


def set_precision(model, precision):
  """Every matrix product and convolution of the model computes in `precision`; the
  parameters stay float32 (their gradients and the optimizer too), BatchNorm normalizes
  in float32, and the loss takes float32 predictions (train/step.py). A model with
  parameters outside the layers it knows is refused: they would stay float32 while the
  record says otherwise."""
  dtype = PRECISIONS[precision]
  if dtype is not None:
    check_precision(model, precision)
  for _, module in nnx.iter_modules(model):
    if isinstance(module, PRODUCT_LAYERS) and not isinstance(module, nnx.Embed):
      module.dtype = dtype
  return model


def check_precision(model, precision):
  known = set()
  for path, module in nnx.iter_modules(model):
    if isinstance(module, PRODUCT_LAYERS + FLOAT32_LAYERS):
      for sub, _ in nnx.iter_graph(module):
        known.add(tuple(path) + tuple(sub))
  for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    if tuple(path) not in known:
      raise UserError(f"precision={precision} reaches the products of nnx.Linear, Conv, "
                      f"Einsum and jbatch's layers; parameter {'.'.join(map(str, path))} is in "
                      "another layer and would stay float32: build it from those layers or "
                      "set --config.precision=float32")


def count_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
