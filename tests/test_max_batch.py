"""The largest-batch search: exact on a known threshold, and on a real train step's plan."""

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


def test_largest_batch_of_a_real_step_is_where_its_plan_crosses_the_budget():
  c = config_lib.base()
  engine = Engine(registry.build(c, (32,), 10, seed=0), optim.make(c.optimizer),
                  parallel.make_mesh("cpu", 1))
  plan = lambda b: max_batch.planned_bytes(engine.train_step, engine.state, (32,), b)
  assert plan(2000) > plan(1000) > plan(500)  # the plan grows with the batch
  budget = plan(3000) + 1
  best, _ = max_batch.largest_batch(lambda b: plan(b) <= budget, start=256)
  assert plan(best) <= budget < plan(best + 1)
  assert 3000 <= best < 3100
