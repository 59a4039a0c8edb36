"""The main job: a small version of every study, offline, in minutes on a 2-core CPU.

The accuracy part reads Fashion-MNIST's idx files from $JBATCH_DATA_DIR, the dynamics and
critical-batch parts MNIST's.
"""

import ml_collections

from jbatch import config as config_lib
from jbatch.studies import determinism, throughput


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "suite"
  c.suite = ("throughput", "accuracy", "dynamics", "loader", "determinism", "critical_batch")

  t = throughput.default_config()
  t.synthetic.num_train = 20_000
  t.batch_sizes = (100, 1000, "full")
  t.epochs = 2
  t.pow2_probe = (255, 256, 257)
  t.memory_budget = 1 << 28  # largest batch within 256 MB, as on a small device: seconds
  c.throughput = t

  c.accuracy = config_lib.from_file(__file__, "accuracy_small")
  c.dynamics = config_lib.from_file(__file__, "dynamics_small")

  # The loader part feeds a small CNN instead of MobileNetV2: compiling MobileNetV2 alone
  # takes 40 s on a 2-core CPU (experiments/loader_small.py keeps it).
  ld = config_lib.from_file(__file__, "loader_small")
  ld.workers = (0, 2)
  ld.model = "cnn"
  ld.cnn.channels = (8, 16)
  ld.cnn.hidden = 32
  c.loader = ld

  d = determinism.default_config()
  d.steps = 3
  d.synthetic.num_train = 1024
  d.synthetic.input_shape = (8, 8, 3)
  d.cnn.channels = (8,)
  d.batch_sizes = (128,)
  c.determinism = d

  # Steps to a target at batch 16, 64, 256 and 1024, three learning rates each: 20 seconds.
  cb = config_lib.from_file(__file__, "critical_batch_small")
  cb.batch_sizes = (16, 64, 256, 1024)
  cb.trials = 3
  c.critical_batch = cb
  return c
