"""PyTorch epochs over an in-memory dataset, the reference the JAX engine is timed against.

Batches are gathered from tensors already in memory (on the GPU when one is
used) by a per-epoch permutation, as the JAX engine does, so both sides time
the training step and not a loader.
"""

import time

import numpy as np
import torch



def device_for(kind):
  return torch.device("cuda" if kind == "gpu" else "cpu")


def make_optimizer(cfg, params):
  if cfg.name in ("sgd", "nesterov"):
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum,
                           nesterov=cfg.name == "nesterov", weight_decay=cfg.weight_decay)
  if cfg.name == "adam":
    return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
  return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


class TorchRunner:

  def __init__(self, config, workload, dataset, device_kind, jax_model, compile_model=False):
    """The workload's PyTorch twin (workload.torch_twin) with the weights of `jax_model`,
    and its per-example loss."""
    torch.manual_seed(config.seed)
    self.device = device_for(device_kind)
    model, self.loss = workload.torch_twin(jax_model)
    self.model = model.to(self.device)
    # On a GPU, convolutions in channels-last (NHWC) memory, as a tuned PyTorch run has them
    # (cuDNN's tensor-core kernels); the inputs are NHWC already (models.py permutes them).
    self.channels_last = self.device.type == "cuda" and dataset.train_x.ndim == 4
    if self.channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
    self.optimizer = make_optimizer(config.optimizer, self.model.parameters())
    self.forward = torch.compile(self.model) if compile_model else self.model
    self.x = torch.from_numpy(np.ascontiguousarray(dataset.train_x)).to(self.device)
    y = dataset.train_y
    y = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y  # torch's class index
    self.y = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)
    self.classifier = "acc" in workload.metrics
    self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
    # precision=bfloat16: autocast, PyTorch's own mixed precision (float32 weights, matrix
    # products and convolutions in bfloat16), as the JAX side computes.
    self.autocast = config.get("precision", "float32") == "bfloat16"

  def step(self, idx):
    xb, yb = self.x[idx], self.y[idx]
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      logits = self.forward(xb)
    loss = self.loss(logits.float(), yb).mean()
    loss.backward()
    self.optimizer.step()
    correct = (logits.argmax(-1) == yb).sum() if self.classifier else 0
    return loss.detach() * len(idx), correct

  def epoch(self, plan):
    """Runs one epoch of `plan` (train/plan.py); returns (seconds, mean loss, accuracy)."""
    self.model.train()
    b, stop = plan.batch_size, plan.examples_per_epoch
    t0 = time.perf_counter()
    perm = torch.randperm(len(self.x), generator=self.generator).to(self.device)
    loss_sum = correct = 0
    for start in range(0, stop, b):
      loss, right = self.step(perm[start:start + b])
      loss_sum, correct = loss_sum + loss, correct + right
    if self.device.type == "cuda":
      torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return seconds, float(loss_sum) / stop, float(correct) / stop
