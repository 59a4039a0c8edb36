"""Runs many `jbatch` commands fast: imports the heavy libraries once, then forks a fresh
child per command, which imports jbatch and runs it as `python -m jbatch ARGS` would.

Protocol: one JSON list of arguments per stdin line; one JSON {returncode, stderr} per
stdout line. The server never starts a JAX backend itself, so the forked children are
as fresh as a new process (JAX initializes its devices on first use, in the child).
"""

import json
import os
import sys
import tempfile

import absl.flags  # noqa: F401  heavy imports, once, before any fork
import flax  # noqa: F401
import jax  # noqa: F401
import ml_collections  # noqa: F401
import numpy  # noqa: F401
import optax  # noqa: F401
import orbax.checkpoint  # noqa: F401


def serve():
  for line in sys.stdin:
    args = json.loads(line)
    with tempfile.TemporaryFile() as err:
      pid = os.fork()
      if pid == 0:  # the child: a jbatch command
        os.dup2(err.fileno(), 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        sys.argv = ["jbatch", *args]
        code = 0
        try:
          from jbatch import cli
          cli.run()
        except SystemExit as e:
          code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
          import traceback
          traceback.print_exc()
          code = 1
        sys.stderr.flush()
        os._exit(code)
      _, status = os.waitpid(pid, 0)
      err.seek(0)
      stderr = err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.write(json.dumps({"returncode": code, "stderr": stderr}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
  serve()
