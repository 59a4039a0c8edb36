"""PyTorch twins of jbatch's Flax models, and weight copying from the Flax side.

Copying weights and comparing outputs, then a few train steps, is how parity
is checked (AlgoPerf's way): tests/test_torch_parity.py.
"""

import numpy as np
import torch
from torch import nn


class _BiasedRunningVariance:
  """PyTorch's BatchNorm with Flax's running variance: Flax averages the biased batch
  variance into it, PyTorch the unbiased one. The fused kernel runs as usual and the
  per-channel update is corrected afterwards (C numbers, so no cost a step would show)."""

  def forward(self, x):
    if not self.training:
      return super().forward(x)
    # The kernel updates (and autograd keeps) a scratch copy; the buffer gets the correction.
    scratch = self.running_var.clone()
    out = nn.functional.batch_norm(x, self.running_mean, scratch, self.weight, self.bias, True,
                                   self.momentum, self.eps)
    n = x.numel() // x.shape[1]  # examples (times positions) per channel
    with torch.no_grad():
      m = self.momentum
      unbiased = (scratch - (1 - m) * self.running_var) / m
      self.running_var.mul_(1 - m).add_(m * unbiased * ((n - 1) / n))
      self.num_batches_tracked.add_(1)
    return out


class BatchNorm1d(_BiasedRunningVariance, nn.BatchNorm1d):
  pass


class BatchNorm2d(_BiasedRunningVariance, nn.BatchNorm2d):
  pass


class MLP(nn.Module):

  def __init__(self, in_features, num_classes, depth=6, width=64, batchnorm=True):
    super().__init__()
    sizes = [in_features] + [width] * depth
    self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    self.norm = BatchNorm1d(width) if batchnorm else None
    self.out = nn.Linear(width, num_classes)

  def forward(self, x):
    x = x.flatten(1)
    for layer in self.hidden:
      x = torch.relu(layer(x))
    if self.norm is not None:
      x = self.norm(x)
    return self.out(x)


class CNN(nn.Module):

  def __init__(self, in_shape, num_classes, channels=(32, 64), hidden=128, batchnorm=False):
    super().__init__()
    height, width, in_ch = in_shape
    layers = []
    for out_ch in channels:
      layers += [nn.Conv2d(in_ch, out_ch, 3)] + ([BatchNorm2d(out_ch)] if batchnorm else [])
      layers.append(nn.ReLU())
      in_ch, height, width = out_ch, height - 2, width - 2
    self.features = nn.Sequential(*layers, nn.MaxPool2d(2))
    self.dense = nn.Linear((height // 2) * (width // 2) * in_ch, hidden)
    self.out = nn.Linear(hidden, num_classes)

  def forward(self, x):  # x: NHWC like the JAX side; features run in NCHW
    x = self.features(x.permute(0, 3, 1, 2))
    x = x.permute(0, 2, 3, 1).flatten(1)  # flatten in HWC order, as Flax does
    return self.out(torch.relu(self.dense(x)))


def _conv_bn(in_ch, out_ch, kernel, stride=1, groups=1, act=True):
  layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            BatchNorm2d(out_ch)]
  return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):

  def __init__(self, in_ch, out_ch, stride, expand):
    super().__init__()
    hidden = in_ch * expand
    layers = [_conv_bn(in_ch, hidden, 1)] if expand != 1 else []
    layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
               _conv_bn(hidden, out_ch, 1, act=False)]
    self.body = nn.Sequential(*layers)
    self.residual = stride == 1 and in_ch == out_ch

  def forward(self, x):
    return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
  """The twin of jbatch.models.mobilenet_v2 (same stages, no classifier dropout)."""

  def __init__(self, num_classes, variant="cifar", width=1.0):
    super().__init__()
    from jbatch.models.mobilenet_v2 import CIFAR_STAGES, IMAGENET_STAGES, make_divisible
    stages, stem_stride = (CIFAR_STAGES, 1) if variant == "cifar" else (IMAGENET_STAGES, 2)
    in_ch = make_divisible(32 * width)
    layers = [_conv_bn(3, in_ch, 3, stem_stride)]
    for expand, channels, repeats, stride in stages:
      out_ch = make_divisible(channels * width)
      for i in range(repeats):
        layers.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expand))
        in_ch = out_ch
    last = make_divisible(1280 * max(1.0, width))
    self.features = nn.Sequential(*layers, _conv_bn(in_ch, last, 1))
    self.classifier = nn.Linear(last, num_classes)

  def forward(self, x):  # x: NHWC like the JAX side
    x = self.features(x.permute(0, 3, 1, 2))
    return self.classifier(x.mean((2, 3)))


def build(config, input_shape, num_classes):
  if config.model == "mlp":
    c = config.mlp
    return MLP(int(np.prod(input_shape)), num_classes, c.depth, c.width, c.batchnorm)
  if config.model == "cnn":
    c = config.cnn
    return CNN(tuple(input_shape), num_classes, tuple(c.channels), c.hidden, c.batchnorm)
  if config.model == "mobilenet_v2":
    return MobileNetV2(num_classes, config.mobilenet_v2.variant, config.mobilenet_v2.width)
  raise NotImplementedError(f"no PyTorch twin of model {config.model!r} yet")


def _copy_linear(dst, src):
  dst.weight.data = torch.from_numpy(np.asarray(src.kernel[...]).T.copy())
  dst.bias.data = torch.from_numpy(np.asarray(src.bias[...]).copy())


def _copy_conv(dst, src):
  # Flax HWIO -> PyTorch OIHW
  dst.weight.data = torch.from_numpy(np.asarray(src.kernel[...]).transpose(3, 2, 0, 1).copy())
  dst.bias.data = torch.from_numpy(np.asarray(src.bias[...]).copy())


def _copy_bn(dst, src):
  dst.weight.data = torch.from_numpy(np.asarray(src.scale[...]).copy())
  dst.bias.data = torch.from_numpy(np.asarray(src.bias[...]).copy())
  dst.running_mean.data = torch.from_numpy(np.asarray(src.mean[...]).copy())
  dst.running_var.data = torch.from_numpy(np.asarray(src.var[...]).copy())


def copy_from_flax(torch_model, flax_model):
  """Load a Flax MLP or CNN's weights into its PyTorch twin, in place."""
  if isinstance(torch_model, MLP):
    for dst, src in zip(torch_model.hidden, flax_model.hidden):
      _copy_linear(dst, src)
    if torch_model.norm is not None:
      _copy_bn(torch_model.norm, flax_model.norm)
  else:
    convs = [m for m in torch_model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in torch_model.features if isinstance(m, nn.BatchNorm2d)]
    for dst, src in zip(convs, flax_model.convs):
      _copy_conv(dst, src)
    for dst, src in zip(norms, [n for n in flax_model.norms if n is not None]):
      _copy_bn(dst, src)
    _copy_linear(torch_model.dense, flax_model.dense)
  _copy_linear(torch_model.out, flax_model.out)
  return torch_model

