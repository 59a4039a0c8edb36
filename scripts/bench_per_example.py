"""Side by side, one process: what per-example gradient norms cost against a plain train step.

  python scripts/bench_per_example.py [--models=cnn,mobilenet_v2] [--batch_sizes=128,256]
                                      [--device_kind=cpu|gpu]

For each model and batch size, ms per call of:
  jax_step    a plain SGD train step (jbatch's engine step, jitted)
  jax_vmap    per-example norms by jax.vmap(jax.grad), in chunks of --chunk
  jax_fast    per-example norms by the fast path (probes/per_example.py)
  torch_step  the PyTorch eager SGD step on the same model and batch
  torch_func  PyTorch per-sample gradients by torch.func (vmap(grad)) and their norms
and the ratios to the plain step of the same framework. Norms are taken with
BatchNorm in evaluation mode on both sides. The issue's target: jax_fast no
more than 1.5x jax_step at batch 256. Variants alternate within a round; the
best median of the rounds is kept.
"""


from absl import app, flags
import jax
import numpy as np

from jbatch import config as config_lib
from jbatch.bench import timing
from jbatch.data import synthetic
from jbatch.models import registry
from jbatch.probes import per_example
from jbatch.train import optim, parallel
from jbatch.train.engine import Engine

_MODELS = flags.DEFINE_list("models", ["cnn", "mobilenet_v2"], "cnn (MNIST) and/or mobilenet_v2 (CIFAR)")
_BATCHES = flags.DEFINE_list("batch_sizes", ["128", "256"], "batch sizes")
_CHUNK = flags.DEFINE_integer("chunk", 32, "examples per vmap chunk")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "alternating rounds")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per variant per round")
_TORCH = flags.DEFINE_bool("torch", True, "time the PyTorch reference too")
_KIND = flags.DEFINE_string("device_kind", "cpu", "the device both frameworks run on")


def _config(model):
  c = config_lib.base()
  c.model = model
  c.optimizer.learning_rate = 0.01
  c.mobilenet_v2.variant = "cifar"
  return c


def _shape(model):
  return (28, 28, 1) if model == "cnn" else (32, 32, 3)


def _jax_variants(model, b):
  c = _config(model)
  data = synthetic.make(b, 10, _shape(model), 10, seed=0)
  kind = _KIND.value
  engine = Engine(registry.build(c, data.input_shape, 10, seed=0, platform=kind),
                  optim.make(c.optimizer), parallel.make_mesh(kind, 1))
  x, y = engine.put(data.train_x, data.train_y)
  step, _ = timing.compile_timed(engine.jit(engine.train_step), engine.state, x, y)
  state = engine.state
  variants = {"jax_step": lambda: step(state, x, y)}
  for method in per_example.METHODS:
    norms = engine.jit(per_example.make(engine.graphdef, engine.workload, method, min(_CHUNK.value, b)))
    fn, _ = timing.compile_timed(norms, state.params, state.model_state, x, y)
    variants[f"jax_{method}"] = (lambda fn=fn: fn(state.params, state.model_state, x, y))
  return variants, data


def _torch_variants(model, data):
  import torch
  import torch.nn.functional as F
  from torch.func import functional_call, grad, vmap
  from jbatch.torch_ref import models
  from jbatch.torch_ref.train import device_for
  torch.manual_seed(0)
  device = device_for(_KIND.value)
  net = models.build(_config(model), _shape(model), 10).to(device)
  opt = torch.optim.SGD(net.parameters(), lr=0.01)
  x = torch.from_numpy(np.ascontiguousarray(data.train_x)).to(device)
  y = torch.from_numpy(data.train_y.astype(np.int64)).to(device)
  # A GPU runs ahead of Python: each timed call waits for its kernels.
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

  def step():
    net.train()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    opt.step()
    sync()

  params = {k: v.detach() for k, v in net.named_parameters()}
  buffers = {k: v.detach() for k, v in net.named_buffers()}

  def one_loss(p, xi, yi):
    out = functional_call(net, (p, buffers), (xi[None],))
    return F.cross_entropy(out, yi[None])

  per_sample = vmap(grad(one_loss), in_dims=(None, 0, 0))

  def func_norms():
    net.eval()
    grads = per_sample(params, x, y)
    out = torch.stack([g.reshape(len(x), -1).square().sum(1) for g in grads.values()]).sum(0)
    sync()
    return out

  return {"torch_step": step, "torch_func": func_norms}, torch.get_num_threads()


def main(_):
  print(f"{_KIND.value}: {jax.devices(_KIND.value)[0].device_kind}; per-example norms with "
        "BatchNorm in evaluation mode")
  for model in _MODELS.value:
    for b in map(int, _BATCHES.value):
      variants, data = _jax_variants(model, b)
      threads = None
      if _TORCH.value:
        torch_variants, threads = _torch_variants(model, data)
        variants.update(torch_variants)
      best = {}
      for _ in range(_ROUNDS.value):
        for name, fn in variants.items():
          t = timing.median_seconds(fn, _REPEATS.value, warmup=1)
          best[name] = min(best.get(name, t), t)
      print(f"\n{model} batch {b} (torch threads {threads}); ms per call, ratio to the plain "
            "step of the same framework:")
      for name, t in best.items():
        base = best["jax_step"] if name.startswith("jax") else best["torch_step"]
        print(f"  {name:11s} {1e3 * t:9.1f}   {t / base:5.2f}x")
      if "torch_func" in best:
        print(f"  torch_func / jax_fast: {best['torch_func'] / best['jax_fast']:.2f} "
              f"(>1: JAX faster)")


if __name__ == "__main__":
  app.run(main)
