"""The jbatch command: `jbatch --config=experiments/<name>.py --workdir=DIR`.

A config names one study (config.study) or a suite (config.study='suite',
config.suite=names, one sub-config per name). Every config is validated
before the work folder is touched; a problem is one line on stderr and exit
status 2. Then each study runs its grid, appending records to
DIR/results.jsonl, and DIR/report.md is written from them.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jbatch.errors import UserError
from jbatch.studies import plan
from jbatch.results import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "An experiments/*.py config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: config.json, results.jsonl, report.md.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rewrite report.md from the records.")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache", os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                  os.path.expanduser("~/.cache"), "jbatch", "xla"),
    "JAX's persistent compilation cache: a resumed or repeated sweep loads what it compiled "
    "before instead of compiling it again. Empty: off.")


def fail(message):
  print(f"jbatch: error: {message}", file=sys.stderr)
  sys.exit(2)


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
    return config
  except Exception as e:
    if not os.path.isfile(given[-1]):
      fail(f"config file {given[-1]} does not exist; check the path (configs are in experiments/)")
    fail(f"config file {given[-1]} does not load: {type(e).__name__}: {str(e).splitlines()[-1]}")


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
    studies = plan(config)
    workdir_lib.check_writable(workdir)
  except UserError as e:
    fail(str(e))
  _use_compile_cache(_COMPILE_CACHE.value)
  snapshot = workdir_lib.Snapshot(workdir)
  os.makedirs(workdir, exist_ok=True)
  try:
    with workdir_lib.locked(workdir):
      tmp = os.path.join(workdir, "config.json.tmp")
      with open(tmp, "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
      os.replace(tmp, os.path.join(workdir, "config.json"))
      for module, cfg in studies:
        module.run(cfg, workdir)
        report.write(workdir, STUDIES)
  except workdir_lib.Busy as e:  # the folder is the other run's: touch nothing
    fail(str(e))
  except UserError as e:  # found once data was loaded, or a full disk
    snapshot.restore()
    fail(str(e))
  print(f"report: {os.path.join(workdir, 'report.md')}")


def _use_compile_cache(path):
  """Turns on JAX's persistent compilation cache at path; a folder that cannot be used is a
  warning, never a failure (a corrupt entry JAX itself reads as a miss and compiles anew)."""
  if not path:
    return
  try:
    workdir_lib.check_writable(path, "--compile_cache")
    os.makedirs(path, exist_ok=True)
  except (OSError, UserError) as e:
    print(f"[jbatch] warning: compile cache {path} cannot be used ({e}); compiling without it",
          file=sys.stderr)
    return
  import jax
  jax.config.update("jax_compilation_cache_dir", path)
  # Most of jbatch's programs compile in well under JAX's default threshold of 1 s.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # for the studies' own child processes


def run():
  app.run(main, flags_parser=_parse_flags)
