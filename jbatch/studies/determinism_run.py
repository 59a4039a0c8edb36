"""One run of the determinism study, in its own process: python -m jbatch.studies.determinism_run JOB.

JOB is JSON {config, batch_size, kind}. Trains config.steps steps as one fused
call (compiled first), and prints JSON: ms per step, the SHA-256 of the final
parameters' bytes, the XLA_FLAGS it started with, the device.
"""

import hashlib
import json
import os
import sys
import time


def main(job):
  import jax
  import ml_collections
  import numpy as np
  from jbatch.bench import timing
  from jbatch.data import registry as data_registry
  from jbatch.models import registry as model_registry
  from jbatch.train import loop, optim, parallel
  from jbatch.train.engine import Engine

  config = ml_collections.ConfigDict(job["config"])
  b = job["batch_size"]
  dataset = data_registry.load(config)
  mesh = parallel.make_mesh(job["kind"], 1)
  model = model_registry.build(config, dataset.input_shape, dataset.num_classes, config.seed,
                               mesh.devices.flat[0].platform)
  engine = Engine(model, optim.make(config.optimizer), mesh)
  x, y = engine.put(dataset.train_x, dataset.train_y)
  key = engine.put(loop.epoch_key(config.seed, 0))[0]
  epoch, compile_s = timing.compile_timed(
      engine.fused_epoch(b, dataset.num_train, "drop", steps=config.steps), engine.state, x, y, key)
  t0 = time.perf_counter()
  state, metrics = epoch(engine.state, x, y, key)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - t0
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(state.params):
    digest.update(np.asarray(leaf).tobytes())
  print(json.dumps({"step_ms": 1e3 * seconds / config.steps, "params_sha256": digest.hexdigest(),
                    "xla_flags": os.environ.get("XLA_FLAGS", ""), "compile_s": compile_s,
                    "device_name": engine.device.device_kind, "n_devices": 1}))


if __name__ == "__main__":
  main(json.loads(sys.argv[1]))
