"""The main job: a small version of every study, offline, in minutes on a 2-core CPU.

The accuracy part reads Fashion-MNIST's idx files from $JBATCH_DATA_DIR, the dynamics part
MNIST's.
"""

import ml_collections

from jbatch import config as config_lib
from jbatch.studies import throughput


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "suite"
  c.suite = ("throughput", "accuracy", "dynamics")

  t = throughput.default_config()
  t.synthetic.num_train = 20_000
  t.batch_sizes = (100, 1000, "full")
  t.epochs = 2
  t.pow2_probe = (255, 256, 257)
  c.throughput = t

  c.accuracy = config_lib.from_file(__file__, "accuracy_small")
  c.dynamics = config_lib.from_file(__file__, "dynamics_small")
  return c
