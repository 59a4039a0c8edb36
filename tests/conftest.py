"""Shared fixtures: tiny configs built from the real ones, the shared data folder, a CLI runner."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
# The suite's compiled programs go to a compile cache of its own beside pytest's cache
# (the CLI's default is under $XDG_CACHE_HOME), not into the user's; every test process
# and the commands they start inherit it. Delete the folder for a cold run.
os.environ["XDG_CACHE_HOME"] = os.path.join(REPO, ".pytest_cache", "xdg")


def data_dir():
  return os.environ.get("JBATCH_DATA_DIR") or SHARED_DATA


@pytest.fixture
def mnist_dir():
  d = data_dir()
  if not os.path.exists(os.path.join(d, "mnist")):
    pytest.skip(f"no MNIST idx files under {d}; set JBATCH_DATA_DIR")
  return d


def run_cli(*args, env=None, cwd=REPO):
  """Runs `python -m jbatch ARGS` in a fresh process; returns the CompletedProcess."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", "jbatch", *args], capture_output=True, text=True,
                        env=full_env, cwd=cwd, timeout=600)


def run_python(code, env=None):
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=full_env, cwd=REPO, timeout=600)


class _CliServer:
  """One tests/cli_server.py process per test worker: `jbatch` commands in forked children
  that skip the two seconds of importing JAX and its friends each."""

  def __init__(self):
    self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "cli_server.py")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 cwd=REPO)

  def run(self, *args):
    import json
    self.proc.stdin.write(json.dumps([str(a) for a in args]) + "\n")
    self.proc.stdin.flush()
    out = json.loads(self.proc.stdout.readline())
    return subprocess.CompletedProcess(args, out["returncode"], "", out["stderr"])

  def close(self):
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


@pytest.fixture(scope="session")
def fast_cli():
  """run_cli for many short commands (bad input): same behaviour, forked from one server."""
  server = _CliServer()
  yield server.run
  server.close()
