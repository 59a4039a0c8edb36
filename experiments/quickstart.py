"""The main job: a small version of every study, offline, in minutes on a 2-core CPU."""

import ml_collections

from jbatch.studies import throughput


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "suite"
  c.suite = ("throughput",)

  t = throughput.default_config()
  t.synthetic.num_train = 20_000
  t.batch_sizes = (100, 1000, "full")
  t.epochs = 2
  t.pow2_probe = (255, 256, 257)
  c.throughput = t
  return c
