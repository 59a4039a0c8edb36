"""Side by side, one process: the LR trials of one batch size one after another (sharing one
compile) against all of them as one vmapped program, per device kind present.

  python scripts/bench_trials.py [--trials=8] [--batch_sizes=100,1000] [--epochs=2]
      [--model=mlp] [--num_train=20000] [--device_kinds=cpu,gpu]

Each trial trains the whole length (no target, so both sides run the same steps),
evaluated on the validation split at every epoch end. Each side runs once to
compile and warm up, then is timed; prints sequential / vmapped (>1: vmapped faster).
"""

import time

import jax
from absl import app, flags

from jbatch import workloads
from jbatch.studies import critical_batch
from jbatch.train import parallel, plan as plan_lib, point as point_lib, trials as trials_lib

_TRIALS = flags.DEFINE_integer("trials", 8, "learning rates per batch size")
_BATCHES = flags.DEFINE_list("batch_sizes", ["100", "1000"], "batch sizes")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "epochs per trial")
_MODEL = flags.DEFINE_string("model", "mlp", "mlp (the S4 model) or cnn")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 20_000, "synthetic training examples")
_KINDS = flags.DEFINE_list("device_kinds", ["cpu", "gpu"], "device kinds, those present")


def main(_):
  c = critical_batch.default_config()
  c.dataset, c.model, c.num_devices = "synthetic", _MODEL.value, 1
  c.synthetic.num_train = _NUM_TRAIN.value + 2_000
  c.synthetic.input_shape = (32,) if _MODEL.value == "mlp" else (28, 28, 1)
  c.validation_examples = 2_000
  workload = workloads.from_config(c)
  dataset = workloads.load_data(c, workload)
  trials = [trials_lib.Trial(lr, None, 0)
            for lr, _ in trials_lib.search_space((0.003, 0.3), _TRIALS.value)]
  print(f"{_MODEL.value}, {dataset.num_train} examples, {_TRIALS.value} trials x "
        f"{_EPOCHS.value} epochs, jax {jax.__version__}")
  print(f"{'device':>6} {'batch':>6} {'sequential s':>13} {'vmapped s':>10} {'seq/vmapped':>12}")
  for kind in parallel.present_kinds(_KINDS.value):
    for b in map(int, _BATCHES.value):
      plan = plan_lib.make(dataset.num_train, b, "drop", epochs=_EPOCHS.value)
      p = point_lib.setup(c, workload, dataset, batch_size=b, seed=0, plan=plan, inject=True,
                          device_kind=kind)
      seconds = {}
      for name, run in (("sequential", lambda: trials_lib.run_sequential(p, trials, None)),
                        ("vmapped", lambda: trials_lib.run_vmapped(p, trials, None, 1000))):
        run()  # compiles, warms up
        t0 = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - t0
      print(f"{kind:>6} {b:>6} {seconds['sequential']:>13.2f} {seconds['vmapped']:>10.2f} "
            f"{seconds['sequential'] / seconds['vmapped']:>12.2f}")


if __name__ == "__main__":
  app.run(main)
