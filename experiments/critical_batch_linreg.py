"""The critical batch of a user workload with a closed form to check it against:
examples/linear_regression.py with SGD (no momentum), the target a validation loss.

B_simple at the target is (d + 1) + d noise^2 / t with t = 2 L* - noise^2 (STUDIES.md
S5); the fitted B_crit should land near it. Seconds on a 2-core CPU.
"""

import os

import ml_collections

from jbatch.studies import critical_batch

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  c = critical_batch.default_config()
  c.workload = os.path.join(HERE, "..", "examples", "linear_regression.py") + ":workload"
  c.workload_config = ml_collections.ConfigDict(dict(
      dim=8, noise=1.0, num_train=8_192, num_validation=4_096, seed=0))
  c.validation_examples = 0  # the workload has its own validation split
  c.target.metric = ""  # the workload's own target: validation loss 0.5 noise^2 + 0.1 dim
  c.optimizer.momentum = 0.0
  c.batch_sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256)
  c.seeds = (0, 1, 2, 3, 4, 5)  # steps per LR: the median over seeds (results/scaling.py)
  c.trials = 24
  c.lr_range = (0.01, 1.5)
  c.trials_vmapped = True  # the 24 LRs of a batch size as one program
  c.max_examples = 2_048  # the tuned LR needs under 30 steps at batch 1
  c.eval_every_examples = 1  # every step: steps to target are a few at the largest batches
  c.probes.enabled = False
  c.speed.steps = 0
  c.max_batch = False
  c.eval_batch_size = 4_096
  return c
