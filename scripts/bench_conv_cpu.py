"""Side by side, one process: CNN train steps on the CPU, XLA's convolution vs jbatch's
choice (conv_impl=auto) vs PyTorch eager.

  python scripts/bench_conv_cpu.py [--models=cnn,mobilenet_v2] [--batch_size=128] [--rounds=3]

For each model: ms per SGD step of JAX with conv_impl=xla and with auto,
each as a lone jitted step and inside a fused epoch (lax.scan over steps, as
jbatch trains), and of PyTorch eager on the same model and batch. Prints the
ratios torch/jax (>1: JAX faster), the GFLOP/s of the auto step from XLA's
cost analysis, and beside it a large float32 matmul's GFLOP/s on this CPU as
the practical peak. Variants alternate within a round; the best median of
the rounds is kept.
"""


from absl import app, flags
import jax
import jax.numpy as jnp

from jbatch import config as config_lib
from jbatch.bench import timing
from jbatch.data import synthetic
from jbatch.models import registry
from jbatch.train import loop, optim, parallel, plan as plan_lib
from jbatch.train.engine import Engine

_MODELS = flags.DEFINE_list("models", ["cnn", "mobilenet_v2"], "cnn (MNIST) and/or mobilenet_v2 (CIFAR)")
_BATCH = flags.DEFINE_integer("batch_size", 128, "batch size")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "alternating rounds")
_STEPS = flags.DEFINE_integer("fused_steps", None, "steps per fused epoch (default: "
                               "16 for cnn, 2 for mobilenet_v2; see FUSED_STEPS)")
_EXTRA = flags.DEFINE_list("extra_impls", [], "more conv_impl values to time")
_XLA_FUSED = flags.DEFINE_bool("xla_fused", True, "also time XLA's convolution inside a fused "
                                "epoch (minutes per step for mobilenet_v2 on a 2-core CPU)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per variant per round")


# Steps per timed fused epoch. Each call of a compiled epoch allocates its temporary
# buffers afresh, and the first step pays the page faults of writing them (the CNN's
# 19 MB convolution output: 10 ms in the first step, 0.9 ms in the next): a cost per
# epoch, which a real epoch of hundreds of steps spreads thin. 16 CNN steps leave it
# at under 2% of a step (4 steps: 0.95 torch/jax where 16 give 1.03-1.11);
# MobileNetV2's 2-second steps hide it at 2.
FUSED_STEPS = {"cnn": 16, "mobilenet_v2": 2}


def _config(model):
  c = config_lib.base()
  c.model = model
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.mobilenet_v2.variant = "cifar"
  return c


def _shape(model):
  return (28, 28, 1) if model == "cnn" else (32, 32, 3)


class JaxVariant:

  def __init__(self, model, impl, b, steps):
    c = _config(model)
    c.conv_impl = impl
    data = synthetic.make(b * steps, 10, _shape(model), 10, seed=0)
    self.engine = Engine(registry.build(c, data.input_shape, 10, seed=0, platform="cpu"),
                         optim.make(c.optimizer), parallel.make_mesh("cpu", 1))
    self.x, self.y = self.engine.put(data.train_x, data.train_y)
    self.b, self.plan = b, plan_lib.make(data.num_train, b, "drop", epochs=1)
    self.step, self.step_compile_s = timing.compile_timed(
        self.engine.jit(self.engine.train_step, donate_argnums=0), self.engine.state,
        self.x[:b], self.y[:b])
    key = loop.epoch_key(0, 0)
    self.epoch, self.epoch_compile_s = timing.compile_timed(
        self.engine.fused_epoch(self.plan), self.engine.state, self.x, self.y, key)
    self.xb, self.yb = self.x[:b], self.y[:b]

  def time_step(self, repeats):
    def run():
      self.engine.state, m = self.step(self.engine.state, self.xb, self.yb)
      return m
    return timing.median_seconds(run, repeats)

  def time_fused(self, repeats):
    def run():
      self.engine.state, m = self.epoch(self.engine.state, self.x, self.y, loop.epoch_key(0, 1))
      return m
    return timing.median_seconds(run, max(1, repeats // 2)) / self.plan.steps_per_epoch


class TorchVariant:

  def __init__(self, model, b):
    import torch
    from jbatch.torch_ref import models
    torch.manual_seed(0)
    c = _config(model)
    self.model = models.build(c, _shape(model), 10)
    self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
    self.x = torch.randn(b, *_shape(model))
    self.y = torch.randint(0, 10, (b,))
    self.threads = torch.get_num_threads()

  def time_step(self, repeats):
    import torch.nn.functional as F

    def run():
      self.opt.zero_grad(set_to_none=True)
      loss = F.cross_entropy(self.model(self.x), self.y)
      loss.backward()
      self.opt.step()
      return None
    run()
    return timing.median_seconds(run, repeats)


def _matmul_gflops():
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  s = timing.median_seconds(lambda: f(a), 5)
  return 2 * 2048 ** 3 / s / 1e9


def main(_):
  b = _BATCH.value
  peak = _matmul_gflops()
  print(f"CPU: {jax.devices('cpu')[0].device_kind}, {len(jax.devices('cpu'))} JAX device(s); "
        f"float32 2048^3 matmul {peak:.1f} GFLOP/s (practical peak)")
  for model in _MODELS.value:
    steps = _STEPS.value or FUSED_STEPS[model]
    jx = {impl: JaxVariant(model, impl, b, steps) for impl in ["xla", "auto"] + _EXTRA.value}
    tv = TorchVariant(model, b)
    best = {}
    for _ in range(_ROUNDS.value):
      for impl, v in jx.items():
        for mode, fn in (("step", v.time_step), ("fused", v.time_fused)):
          if impl == "xla" and mode == "fused" and not _XLA_FUSED.value:
            continue
          t = fn(_REPEATS.value)
          best[f"jax_{impl}_{mode}"] = min(best.get(f"jax_{impl}_{mode}", t), t)
      t = tv.time_step(_REPEATS.value)
      best["torch_eager"] = min(best.get("torch_eager", t), t)
    impl = registry.conv_impl(_config(model), "cpu")
    print(f"\n{model} batch {b} (auto = {impl}; torch threads {tv.threads}; {steps} steps per "
          "fused epoch); ms per train step:")
    for name, t in best.items():
      print(f"  {name:18s} {1e3 * t:9.1f}")
    for mode in ("step", "fused"):
      if f"jax_xla_{mode}" not in best:
        print(f"  torch_eager / jax_auto_{mode}: {best['torch_eager'] / best[f'jax_auto_{mode}']:6.2f}")
        continue
      print(f"  torch_eager / jax_xla_{mode}:  {best['torch_eager'] / best[f'jax_xla_{mode}']:6.2f}"
            f"   torch_eager / jax_auto_{mode}: {best['torch_eager'] / best[f'jax_auto_{mode}']:6.2f}"
            f"   xla / auto ({mode}): {best[f'jax_xla_{mode}'] / best[f'jax_auto_{mode}']:6.2f}")
    auto = jx["auto"]
    flops = timing.step_flops(auto.engine.train_step, auto.engine.state, auto.xb, auto.yb)
    if flops:
      rate = flops / best["jax_auto_fused"] / 1e9
      print(f"  jax auto fused: {flops / 1e9:.2f} GFLOP per step (XLA), {rate:.1f} GFLOP/s "
            f"= {rate / peak:.0%} of the matmul peak")
    print(f"  compile s: xla step {jx['xla'].step_compile_s:.1f}, auto step "
          f"{jx['auto'].step_compile_s:.1f}, auto fused {jx['auto'].epoch_compile_s:.1f}")


if __name__ == "__main__":
  app.run(main)
