"""Study names -> modules (each has default_config, validate(config, workload),
run(config, workload, workdir) and report), and the validation of a config that names
one study or a suite of them."""

from jbatch import distributed, workloads
from jbatch.errors import UserError
from jbatch.studies import accuracy, critical_batch, determinism, dynamics, loader, throughput

STUDIES = {m.NAME: m for m in (throughput, accuracy, dynamics, loader, determinism,
                               critical_batch)}


def plan(config, workload=None):
  """[(study module, its config, its workload)], every one validated; raises UserError.
  workload: an in-memory one (the Python API) for every study; None: each config's own
  (workloads.from_config)."""
  if config.study == "suite":
    names = list(config.suite)
    configs = [config.get(n) for n in names]
  else:
    names, configs = [config.study], [config]
  out = []
  for name, cfg in zip(names, configs):
    if name not in STUDIES:
      raise UserError(f"unknown study {name!r}; choose one of {', '.join(sorted(STUDIES))}")
    if cfg is None:
      raise UserError(f"the suite lists {name!r} but the config has no {name} section")
    if distributed.process_count() > 1 and not getattr(STUDIES[name], "MULTI_PROCESS", False):
      able = ", ".join(n for n, m in STUDIES.items() if getattr(m, "MULTI_PROCESS", False))
      raise UserError(f"study {name} runs in one process; run it without --num_processes "
                      f"(studies that span several processes: {able})")
    w = workload or workloads.from_config(cfg)
    cfg = workloads.bind(cfg, w)
    STUDIES[name].validate(cfg, w)
    out.append((STUDIES[name], cfg, w))
  return out
