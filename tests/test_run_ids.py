"""Every setting that can change a result changes the run id, so that a resumed sweep never
keeps a record made with other settings."""

import inspect

import pytest

from jbatch.studies import STUDIES

# Fields that cannot change any result: how often a run is saved, where the same data files
# are read from, and the name of the study the config is for.
NO_EFFECT = {"checkpoint_every", "data_dir", "study"}
NUM_TRAIN = 10_000
# Changes that the grid can still build (it looks these names up).
VALID_CHANGE = {"optimizers": ("adam",), "device_kind": "cpu"}
# device_kinds lists the kinds to use when present; each point's kind is in its run id.
PRESENT_ONLY = {"device_kinds"}


def _leaves(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _leaves(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def _changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1
  if isinstance(value, float):
    return value * 1.5 + 0.125
  if isinstance(value, str):
    return value + "2"
  if isinstance(value, (tuple, list)):
    if not value:
      return (3,)
    first = _changed(value[0]) if not isinstance(value[0], str) else value[0] + "2"
    return (first,) + tuple(value[1:])
  raise TypeError(value)


def _set(config, path, value):
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  with node.unlocked() if hasattr(node, "unlocked") else _nothing():
    node[leaf] = value


class _nothing:
  def __enter__(self):
    return self

  def __exit__(self, *a):
    return False


def _ids(study, config):
  grid = study.grid
  args = (config,) if len(inspect.signature(grid).parameters) == 1 else (config, NUM_TRAIN)
  return {p["run_id"] for p in grid(*args)}


def _unused_learning_rate(config, path):
  """The base LR of an optimizer the grid does not use cannot change a result."""
  if not path.startswith("learning_rates."):
    return False
  used = config.get("optimizers", ())
  used = (used,) if isinstance(used, str) else used
  return path.split(".", 1)[1] not in used


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_setting_that_can_change_a_result_changes_the_run_id(name):
  study = STUDIES[name]
  base = study.default_config()
  if name == "throughput":
    base.pow2_probe = ()  # a probe size above NUM_TRAIN would not be a valid grid
  before = _ids(study, base)
  missed = []
  for path, value in _leaves(base.to_dict()):
    if (path.split(".")[-1] in NO_EFFECT | PRESENT_ONLY or _unused_learning_rate(base, path)):
      continue
    changed = base.copy_and_resolve_references()
    new = VALID_CHANGE.get(path, _changed(value))
    if new == value:
      continue
    _set(changed, path, new)
    if _ids(study, changed) == before:
      missed.append(path)
  assert not missed, f"{name}: changing {missed} keeps the run ids"


def test_the_record_seed_is_the_points_seed(tmp_path):
  from conftest import REPO, run_cli
  import json
  out = run_cli(f"--config={REPO}/experiments/accuracy_small.py", "--config.dataset=synthetic",
                "--config.model=mlp", "--config.synthetic.num_train=600",
                "--config.synthetic.num_test=200", "--config.eval_train_examples=200",
                "--config.rules=none", "--config.batch_sizes=(100,)", "--config.epochs=1",
                "--config.seeds=(3,5)", "--config.seed=7", f"--workdir={tmp_path}")
  assert out.returncode == 0, out.stderr[-2000:]
  records = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  assert [r["seed"] for r in records] == [3, 5]
  assert [r["run_id"].split("/")[5] for r in records] == ["s3", "s5"]
  assert records[0]["final_test_acc"] != records[1]["final_test_acc"]  # really other seeds
