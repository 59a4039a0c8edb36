"""The duration plan: the one place where a batch size becomes steps, examples, epoch
boundaries and evaluation points.

A length is given in epochs, examples or steps (config.epochs / examples /
steps); with a training-set size, a batch size and the last-batch rule it
becomes a Plan. Every epoch is `full_steps` batches of `batch_size` plus, under
`last_batch=partial`, one short batch of `tail` examples (PyTorch's DataLoader
default). The fused loop, the host loop, schedules, probes, checkpoints, records,
the PyTorch twin and the scripts all ask a Plan; nothing else divides by a batch
size.
"""

import dataclasses
import math

from jbatch.errors import UserError

LAST_BATCH_MODES = ("drop", "partial")


@dataclasses.dataclass(frozen=True)
class Segment:
  """Steps [start, start + steps) of one epoch, run as one compiled call; an evaluation
  follows it. with_tail: its last step is the epoch's short batch."""
  epoch: int
  start: int
  steps: int
  with_tail: bool

  @property
  def ends_epoch_step(self):
    return self.start + self.steps


@dataclasses.dataclass(frozen=True)
class Plan:
  num_train: int
  batch_size: int
  last_batch: str
  total_steps: int
  eval_every: int = 0           # steps between evaluations in an epoch; 0: epoch ends only
  eval_every_examples: int = 0  # or about this many examples (a whole number of steps)

  @property
  def full_steps(self):
    return self.num_train // self.batch_size

  @property
  def tail(self):
    """Size of each epoch's short last batch, 0 when there is none (or it is dropped)."""
    return self.num_train % self.batch_size if self.last_batch == "partial" else 0

  @property
  def steps_per_epoch(self):
    return self.full_steps + bool(self.tail)

  @property
  def examples_per_epoch(self):
    return self.full_steps * self.batch_size + self.tail

  @property
  def epochs(self):
    """Epochs begun: the last one may be cut short."""
    return math.ceil(self.total_steps / self.steps_per_epoch)

  @property
  def total_examples(self):
    return int(self.examples_at(self.total_steps))

  def steps_in(self, epoch):
    return min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)

  def steps_of_epochs(self, epochs):
    """A length in (fractional) epochs as steps: warmup, LR boundaries."""
    return round(epochs * self.steps_per_epoch)

  def examples_at(self, steps):
    """Examples seen after `steps` steps; an int, a numpy or a traced jax array."""
    epochs, rest = divmod(steps, self.steps_per_epoch)
    return epochs * self.examples_per_epoch + rest * self.batch_size

  def epoch_at(self, steps):
    """Epochs done after `steps` steps: an int at an epoch end, else a fraction."""
    whole, rest = divmod(steps, self.steps_per_epoch)
    return whole if not rest else round(whole + rest / self.steps_per_epoch, 4)

  @property
  def steps_between_evals(self):
    """eval_every, or eval_every_examples as the nearest whole number of steps (0: none)."""
    if self.eval_every:
      return self.eval_every
    if self.eval_every_examples:
      return max(1, round(self.eval_every_examples / self.batch_size))
    return 0

  def eval_steps(self):
    """The steps after which an evaluation runs: every epoch end (and the end of
    training), and every steps_between_evals steps counted from each epoch's start, so
    that every epoch is cut the same way and its segments share their compiles."""
    every, spe = self.steps_between_evals, self.steps_per_epoch
    in_epoch = set(range(every, spe, every)) if every else set()
    in_epoch.add(spe)
    points = {e * spe + s for e in range(self.epochs) for s in in_epoch}
    return sorted({p for p in points if p < self.total_steps} | {self.total_steps})

  def segments(self):
    """The run cut at every evaluation point; epoch ends are evaluation points, so no
    segment crosses an epoch."""
    out, done = [], 0
    for stop in self.eval_steps():
      epoch, start = divmod(done, self.steps_per_epoch)
      steps = stop - done
      with_tail = bool(self.tail) and start + steps == self.steps_per_epoch
      out.append(Segment(epoch, start, steps, with_tail))
      done = stop
    return out


def make(num_train, batch_size, last_batch, *, epochs=0.0, examples=0, steps=0,
         eval_every=0, eval_every_examples=0):
  """A Plan from a length in exactly one of epochs, examples or steps (the others 0).

  Epochs and examples round to the nearest whole step, at least one.
  """
  if last_batch not in LAST_BATCH_MODES:
    raise UserError(f"last_batch={last_batch!r}; choose one of {', '.join(LAST_BATCH_MODES)}")
  if batch_size > num_train:
    raise UserError(f"batch size {batch_size} is larger than the {num_train} training "
                    "examples; lower it or use a larger dataset")
  plan = Plan(num_train, batch_size, last_batch, 1)
  if steps:
    total = steps
  else:
    length = examples / num_train if examples else epochs
    total = max(1, round(length * plan.steps_per_epoch))
  return dataclasses.replace(plan, total_steps=total, eval_every=eval_every,
                             eval_every_examples=eval_every_examples)


def from_config(config, batch_size, num_train):
  """The Plan of a study config (epochs, examples or steps; eval_every; last_batch)."""
  return make(num_train, batch_size, config.last_batch, epochs=config.epochs,
              examples=config.get("examples", 0), steps=config.get("steps", 0),
              eval_every=config.get("eval_every", 0),
              eval_every_examples=config.get("eval_every_examples", 0))


def check_length(config, num_train=None):
  """The length fields of a config: one of epochs, examples, steps; evaluation intervals
  within the run. Returns the length in epochs when it can be known (else None)."""
  examples, steps = config.get("examples", 0), config.get("steps", 0)
  if config.epochs <= 0:
    raise UserError(f"epochs={config.epochs}; give a positive number of epochs")
  if examples < 0 or steps < 0:
    raise UserError(f"examples={examples}, steps={steps}; give 0 (use epochs) or a positive "
                    "count")
  if examples and steps:
    raise UserError(f"examples={examples} and steps={steps} both set; give one length")
  every, every_examples = config.get("eval_every", 0), config.get("eval_every_examples", 0)
  if every < 0 or every_examples < 0:
    raise UserError("eval_every and eval_every_examples must be >= 0 (0: at epoch ends only)")
  if every and every_examples:
    raise UserError(f"eval_every={every} and eval_every_examples={every_examples} both set; "
                    "give one of them")
  if steps and every > steps:
    raise UserError(f"eval_every={every} steps is longer than the {steps} steps of training; "
                    "lower it")
  if steps:
    return None
  if examples:
    if every_examples > examples:
      raise UserError(f"eval_every_examples={every_examples} is longer than the {examples} "
                      "examples of training; lower it")
    return examples / num_train if num_train else None
  if num_train and every_examples > config.epochs * num_train:
    raise UserError(f"eval_every_examples={every_examples} is longer than the "
                    f"{config.epochs * num_train:g} examples of training; lower it")
  return config.epochs


def check_batch_sizes(config, sizes, num_train):
  """Checks shared by all studies: the last-batch rule, the length, and each resolved batch
  size (config.batch_sizes with 'full' resolved) against num_train, the training size."""
  if config.last_batch not in LAST_BATCH_MODES:
    raise UserError(f"last_batch={config.last_batch!r}; choose one of "
                    f"{', '.join(LAST_BATCH_MODES)}")
  check_length(config, num_train)
  if not sizes:
    raise UserError("batch_sizes is empty; give at least one, e.g. --config.batch_sizes=100,1000")
  for b in sizes:
    if not isinstance(b, int) or b <= 0:
      raise UserError(f"batch size {b!r} is not a positive integer; fix --config.batch_sizes")
    if b > num_train:
      raise UserError(f"batch size {b} is larger than the {num_train} training examples; "
                      "lower it or use a larger dataset")
    plan = from_config(config, b, num_train)
    if config.get("eval_every", 0) > plan.total_steps:
      raise UserError(f"eval_every={config.eval_every} steps is longer than the "
                      f"{plan.total_steps} steps of training at batch {b}; lower it")
