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
  from jbatch import workloads
  from jbatch.train import loop, plan as plan_lib, point as point_lib

  config = ml_collections.ConfigDict(job["config"])
  config.num_devices = 1
  workload = workloads.from_config(config)
  dataset = workloads.load_data(config, workload)
  plan = plan_lib.make(dataset.num_train, job["batch_size"], "drop", steps=config.steps)
  point = point_lib.setup(config, workload, dataset, batch_size=job["batch_size"],
                          seed=config.seed,
                          device_kind=job["kind"], plan=plan)
  engine = point.engine
  x, y = point.train_arrays()
  key = engine.put(loop.epoch_key(config.seed, 0))[0]
  segment = plan.segments()[0]  # the first `steps` batches of an epoch, one call
  start = () if segment.steps == plan.steps_per_epoch else (0,)
  epoch, compile_s = timing.compile_timed(engine.fused_epoch(plan, segment=segment),
                                          engine.state, x, y, key, *start)
  t0 = time.perf_counter()
  state, metrics = epoch(engine.state, x, y, key, *start)
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
