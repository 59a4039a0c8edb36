"""The largest-batch search: exact on a known threshold, and on a real train step's plan."""

import jax

from jbatch import config as config_lib
from jbatch.bench import max_batch
from jbatch.models import registry
from jbatch.train import optim, parallel
from jbatch.train.engine import Engine


def test_search_finds_a_known_threshold_in_few_tries():
  for threshold in (1, 2, 3, 1000, 1023, 1024, 1025, 123_456):
    best, tried = max_batch.largest_batch(lambda b: b <= threshold)
    assert best == threshold
    assert len(tried) <= 2 * threshold.bit_length() + 2  # doubling, then bisection
  assert max_batch.largest_batch(lambda b: False)[0] == 0
  assert max_batch.largest_batch(lambda b: True, limit=100)[0] == 100


def test_a_search_to_a_resolution_brackets_the_threshold_within_it_in_fewer_tries():
  for threshold in (1023, 123_456, 190_464):
    exact, exact_tried = max_batch.largest_batch(lambda b: b <= threshold)
    best, tried = max_batch.largest_batch(lambda b: b <= threshold, resolution=0.01)
    over = min(b for b, ok in tried.items() if not ok)
    assert tried[best] and best < over <= best * 1.01 and best <= threshold < over
    assert len(tried) < len(exact_tried)


def test_guided_search_is_exact_and_short_on_affine_and_stepped_plans():
  affine = lambda b: 5_000 + 37 * b  # what XLA plans, nearly
  for plan in (affine,
               lambda b: 4096 * -(-(5_000 + 37 * b) // 4096),    # rounded up to pages
               lambda b: 5_000 + 37 * b + (b * b) // 1000):      # curving up
    for budget in (4_000, 5_037, 1_000_000, 123_456_789):
      sizes = {}

      def fits(b):
        sizes[b] = plan(b)
        return sizes[b] <= budget

      best, tried = max_batch.largest_batch(fits, guess=max_batch.affine_guess(sizes, budget))
      plain, plain_tried = max_batch.largest_batch(lambda b: plan(b) <= budget)
      assert best == plain and (best == 0 or plan(best) <= budget) and plan(best + 1) > budget
      assert len(tried) <= len(plain_tried)
      if plan is affine:
        assert len(tried) <= 4  # 1 and 2, then the predicted boundary and one past it


def test_largest_batch_of_a_real_step_is_where_its_plan_crosses_the_budget():
  c = config_lib.base()
  engine = Engine(registry.build(c, (32,), 10, seed=0), optim.make(c.optimizer),
                  parallel.make_mesh("cpu", 1))
  plan = lambda b: max_batch.planned_bytes(jax.jit(engine.train_step), engine.state, (32,), b)
  assert plan(2000) > plan(1000) > plan(500)  # the plan grows with the batch
  budget = plan(3000) + 1
  sizes = {}

  def fits(b):
    sizes[b] = plan(b)
    return sizes[b] <= budget

  best, tried = max_batch.largest_batch(fits, guess=max_batch.affine_guess(sizes, budget))
  assert plan(best) <= budget < plan(best + 1)
  assert 3000 <= best < 3100
  # Doubling and bisection alone: 24. From 512 rows the blocked weight gradient
  # (models/cpu_matmul.py) copies x's rows of whole blocks apart unless the batch is a
  # multiple of its 64-row blocks, so the plan wiggles with the batch modulo 64 (2,048
  # rows: 8.60 MB, 2,049: 8.94 MB; 3,008: 12.45 MB, 3,009: 12.96 MB) and the line through
  # two sizes lands off: 21 tries here (11 with blocks of 256 rows from 2,048, 8 with plain
  # products), still fewer than doubling and bisection's.
  assert len(tried) < 24
