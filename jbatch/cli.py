"""The jbatch command: `jbatch --config=experiments/<name>.py --workdir=DIR`.

A config names one study (config.study) or a suite (config.study='suite',
config.suite=names, one sub-config per name). Every config is validated
before the work folder is touched; a problem is one line on stderr and exit
status 2. Then each study runs its grid, appending records to
DIR/results.jsonl, and DIR/report.md is written from them.
"""

import ast
import json
import os
import re
import sys
import threading
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from jbatch import api, distributed, workers as workers_lib
from jbatch.errors import UserError
from jbatch.results import claims, workdir as workdir_lib
from jbatch.studies import plan

_CONFIG = config_flags.DEFINE_config_file("config", None, "An experiments/*.py config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: config.json, results.jsonl, report.md.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rewrite report.md from the records.")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache", workdir_lib.DEFAULT_COMPILE_CACHE,
    "JAX's persistent compilation cache: a resumed or repeated sweep loads what it compiled "
    "before instead of compiling it again. Empty: off.")
_WORKERS = flags.DEFINE_integer(
    "workers", None, "Start this many local workers that share the sweep, each pinned to its "
    "own cores (at most the core count).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "HOST:PORT of process 0 of a multi-process run (JAX's "
    "multi-process runtime); with --num_processes and --process_id.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 ... N-1.")
_INIT_TIMEOUT = flags.DEFINE_integer(
    "init_timeout", 30, "Seconds to wait for every process to join before giving up.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout", 20, "Seconds without a heartbeat after which the coordinator counts "
    "a process as lost; the others then stop within about this time.")


def error_line(message):
  """Writes jbatch's one error line in one write(2), so that it stays whole beside
  the tracebacks Orbax's writer threads may print as a full disk stops them; it
  starts a fresh line when such a thread may have left half of one."""
  sys.stderr.flush()
  fresh = "\n" if threading.active_count() > 1 else ""
  os.write(2, f"{fresh}jbatch: error: {message}\n".encode())


def fail(message):
  error_line(message)
  distributed.exit(2)


# --config[.<section>].workload_config.<field>=VALUE: a user workload's own settings, which
# the config file need not list (config_flags accepts only fields the file has).
_WORKLOAD_FIELD = re.compile(r"^--config\.((?:\w+\.)*)workload_config\.(\w+)=(.*)$")
_WORKLOAD_OVERRIDES = []


def _take_workload_overrides(argv):
  """argv without the workload_config overrides, which are kept for _load_config (config_flags
  reads sys.argv itself, so they leave it before absl parses)."""
  _WORKLOAD_OVERRIDES.clear()
  kept = []
  for arg in argv:
    m = _WORKLOAD_FIELD.match(arg)
    if m:
      _WORKLOAD_OVERRIDES.append((m.group(1).rstrip(".").split(".") if m.group(1) else [],
                                  m.group(2), m.group(3)))
    else:
      kept.append(arg)
  return kept


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  except (AttributeError, KeyError) as e:
    if "get_config" in str(e):
      fail("the --config file has no get_config(); give a config file such as "
           "experiments/quickstart.py")
    fail(f"the config has no field {str(e).strip(chr(34))}; check the spelling of the "
         "--config.<field> override against the config file")
  except Exception as e:  # a config file that does not load
    fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip())


def _load_config():
  given = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")]
  if not given:
    fail("give a config: --config=experiments/quickstart.py")
  try:
    config = _CONFIG.value
    config.to_dict()  # config_flags hands back a stand-in that raises on first use
    _override_workload_fields(config)
    return config
  except Exception as e:
    if not os.path.isfile(given[-1]):
      fail(f"config file {given[-1]} does not exist; check the path (configs are in experiments/)")
    fail(f"config file {given[-1]} does not load: {type(e).__name__}: {str(e).splitlines()[-1]}")


def _override_workload_fields(config):
  """Applies --config[.<section>].workload_config.<field>=VALUE: VALUE as the type of the
  field the file gives, else as a Python literal, else as a string."""
  for path, field, text in _WORKLOAD_OVERRIDES:
    node = config
    for key in path:
      if key not in node:
        fail(f"the config has no section {'.'.join(path)} for --config.{'.'.join(path)}"
             f".workload_config.{field}; check the spelling")
      node = node[key]
    if "workload_config" not in node:
      fail(f"the config has no workload_config for --config.{'.'.join(path + [''])}"
           f"workload_config.{field}")
    section = node.workload_config
    old = section.get(field)
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    if isinstance(old, bool) or isinstance(value, bool):
      value = text.lower() in ("1", "true", "yes") if isinstance(old, bool) else value
    elif isinstance(old, float) and isinstance(value, int):
      value = float(value)
    elif isinstance(old, str):
      value = text
    with section.unlocked():
      section[field] = value


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; use --config=... --workdir=...")
  config = _load_config()
  if not _WORKDIR.value:
    fail("give a run folder: --workdir=runs/NAME")
  from jbatch.results import report
  from jbatch.studies import STUDIES
  workdir = _WORKDIR.value
  if _REPORT_ONLY.value:
    print(report.write(workdir, STUDIES))
    return
  try:
    multi = distributed.check_flags(_COORDINATOR.value, _NUM_PROCESSES.value,
                                    _PROCESS_ID.value, _WORKERS.value)
    workers = None if _WORKERS.value is None else workers_lib.check(_WORKERS.value)
    if multi or (workers is None and distributed.launcher_detected()):
      distributed.join(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                       _INIT_TIMEOUT.value, _HEARTBEAT_TIMEOUT.value)
      distributed.watch(error_line)
    config_json = json.dumps(config.to_dict(), sort_keys=True, default=str)
    distributed.check_same(config_json)
    studies = plan(config)
    workdir_lib.check_writable(workdir)
  except UserError as e:
    fail(str(e))
  if workers is not None:
    code = workers_lib.launch(workers, workers_lib.without_workers_flag((_ARGV or sys.argv)[1:]))
    if code == 0:
      print(f"report: {os.path.join(workdir, 'report.md')}")
    sys.exit(code)
  workdir_lib.use_compile_cache(_COMPILE_CACHE.value)
  try:
    _run(config, config_json, studies, workdir)
  except claims.Busy as e:  # the folder is another sweep's: touch nothing
    fail(str(e))
  except Exception as e:
    if distributed.process_count() == 1 or isinstance(e, UserError):
      raise
    distributed.lost(e)  # a lost process: the watcher says so and ends this one
    traceback.print_exc()
    distributed.exit(3)
  distributed.finished()
  if distributed.is_primary() and "JBATCH_WORKER" not in os.environ:  # --workers: the parent's
    print(f"report: {os.path.join(workdir, 'report.md')}")
  if distributed.joined():
    distributed.exit(0)


def _run(config, config_json, studies, workdir):
  try:
    api.execute(config, config_json, studies, workdir)
  except claims.Busy:
    raise
  except UserError as e:  # found once data was loaded, or a full disk
    fail(str(e))


_ARGV = []  # the command line as given: what --workers hands on to its workers


def run():
  _ARGV[:] = sys.argv
  sys.argv = _take_workload_overrides(sys.argv)
  app.run(main, flags_parser=_parse_flags)
