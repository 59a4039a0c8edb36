"""A user's own classifier (examples/mnist_classifier.py, plain flax.nnx layers) through
the throughput and critical-batch studies: seconds per epoch against PyTorch with the
same weights, and its critical batch to 95% validation accuracy on MNIST."""

import os

import ml_collections

from jbatch.studies import critical_batch, throughput

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples",
                        "mnist_classifier.py") + ":workload"


def _on_the_workload(c):
  c.workload = WORKLOAD
  c.workload_config = ml_collections.ConfigDict(dict(hidden=128, data_dir="", validation=5_000,
                                                     seed=0))
  c.validation_examples = 0  # the workload holds out its own validation split
  return c


def get_config():
  c = ml_collections.ConfigDict()
  c.study = "suite"
  c.suite = ("throughput", "critical_batch")
  t = _on_the_workload(throughput.default_config())
  t.batch_sizes = (100, 1000, 10_000)
  t.epochs = 2
  t.pow2_probe = ()
  t.variants = ("jax_fused", "torch_eager")
  t.max_batch = False
  c.throughput = t
  cb = _on_the_workload(critical_batch.default_config())
  cb.train_subset = 20_000
  cb.target.metric = ""  # the workload's own: validation error 0.05
  cb.batch_sizes = (16, 64, 256, 1024)
  cb.trials = 4
  cb.lr_range = (0.01, 1.0)
  cb.max_examples = 200_000
  cb.eval_every_examples = 2_048
  cb.probes.method = "vmap"  # plain nnx layers: the fast path knows jbatch's own layers only
  cb.probes.chunk = 32
  cb.speed.steps = 8
  cb.max_batch = False
  c.critical_batch = cb
  return c
