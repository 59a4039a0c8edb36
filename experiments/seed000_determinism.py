"""seeds/000's cost of determinism: a CNN with BatchNorm on synthetic 16x16 RGB images, batch
256, 20 steps, two runs per mode (XLA deterministic ops off / on), each in a new process, on
every device kind present. Seconds on a CPU; the flag matters on a GPU."""

from jbatch.studies import determinism


def get_config():
  return determinism.default_config()
