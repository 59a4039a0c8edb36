"""The one engine every study drives: a model, an optimizer and a device mesh.

The model is split once; its state lives on the mesh (replicated), the
dataset is put on the device whole, and compiled epochs are built per batch
size on request.
"""

import functools

import jax

from jbatch.bench import timing
from jbatch import cpu_memory
from jbatch.train import loop, optim, parallel, state as state_lib
from jbatch.workloads import builtin
from jbatch.train.step import make_accumulating_train_step, make_eval_step, make_train_step


class Engine:

  def __init__(self, model, tx, mesh, micro_batches=1, workload=None):
    """micro_batches > 1: each step accumulates the gradients of that many slices.
    workload: what the steps compute (workloads/base.py); None: a built-in classifier's."""
    workload = workload or builtin.CLASSIFIER
    self.mesh, self.tx, self.workload = mesh, tx, workload
    self.graphdef, state = state_lib.create(model, tx)
    self.state = parallel.replicate(state, mesh)
    self.train_step = (make_train_step(self.graphdef, tx, workload) if micro_batches == 1 else
                       make_accumulating_train_step(self.graphdef, tx, workload, micro_batches))
    self.batch_sharding = parallel.batch_sharded(mesh)
    # Every program this engine compiles goes through it (jbatch/cpu_memory.py).
    self.jit = functools.partial(cpu_memory.jit, platform=self.device.platform)
    self._compiled = {}

  @property
  def n_devices(self):
    return self.mesh.devices.size

  @property
  def device(self):
    return self.mesh.devices.flat[0]

  def put(self, *arrays):
    """Whole arrays onto every device of the mesh; batches are gathered from them."""
    return parallel.replicate(arrays, self.mesh)

  def fused_epoch(self, plan, probe=None, segment=None, trials=False):
    """An epoch of `plan` (train/plan.py) as one compiled call, or one segment of it."""
    return loop.make_fused_epoch(self.train_step, plan, None if trials else self.batch_sharding,
                                 probe, segment, trials, self.jit)

  def compiled_epoch(self, plan, segment, args, probe=None, trials=False):
    """fused_epoch compiled once per engine and shape, so that the runs that share an
    engine (the LR trials of one batch size) share its compiles: (compiled, seconds
    spent compiling by this call). args: example arguments (state, x, y, key[, start]...)."""
    whole = segment.steps == plan.steps_per_epoch
    key = (plan, probe, trials, "epoch" if whole else (segment.steps, segment.with_tail))
    if key in self._compiled:
      return self._compiled[key], 0.0
    self._compiled[key], seconds = timing.compile_timed(
        self.fused_epoch(plan, probe, None if whole else segment, trials), *args)
    return self._compiled[key], seconds

  def host_loop(self, plan):
    return loop.HostLoop(self.train_step, plan, self.batch_sharding, self.jit)

  def evaluator(self, num_examples, batch_size):
    """jit(engine.weights(), x, y) -> summed metrics over the set."""
    return _evaluator(self.graphdef, self.workload, num_examples, batch_size,
                      self.device.platform)

  def weights(self):
    """What an evaluation reads: the parameters and the model's own state."""
    return self.state.params, self.state.model_state

  def start_from(self, params, model_state, hyperparams=None):
    """Training starts again from these weights: fresh optimizer state, step 0.
    hyperparams: values for an optimizer made with optim.make(..., inject=True)."""
    self.state = parallel.replicate(self.initial_state(params, model_state, hyperparams),
                                    self.mesh)

  def initial_state(self, params, model_state, hyperparams=None):
    opt_state = self.tx.init(params)
    if hyperparams:
      opt_state = optim.with_hyperparams(opt_state, **hyperparams)
    return state_lib.TrainState(params, model_state, opt_state,
                                jax.numpy.zeros((), jax.numpy.int32))

  def model(self):
    return state_lib.to_model(self.graphdef, self.state)


# One evaluation per model and shape, shared by every engine of an equal model (graphdefs of
# equal models compare equal) whatever its optimizer: the points of a sweep compile it once.
@functools.lru_cache(maxsize=None)
def _evaluator(graphdef, workload, num_examples, batch_size, platform):
  # Never split (jbatch/cpu_memory.py): an evaluation runs once per epoch or less, so
  # faulting in its temporaries costs less than compiling it again in every run.
  return loop.make_evaluate(make_eval_step(graphdef, workload), num_examples, batch_size,
                            functools.partial(cpu_memory.jit, platform=platform, split=False))
