"""Injected checkpoint faults, for tests in the pytest process or in a ``python -m
genjax.cli.train`` subprocess (through a ``sitecustomize`` module: :func:`sitecustomize_dir`)."""

import errno
import os

import jax
import orbax.checkpoint as ocp


def disk_full_at(step: int, process: int | None = None):
  """A replacement for Orbax's JSON writer (``JsonCheckpointHandler._save_fn``) that fails the
  save of checkpoint ``step`` as a full disk would: in Orbax's background thread when saves are
  asynchronous, in place when they are not. ``process``: only in that process (every process
  calls the writer; only the primary one writes)."""
  real = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def save_fn(self, x, directory):
    if (directory.parent.name.split(".")[0] == str(step) and  # <step>.orbax-checkpoint-tmp-<t>/meta
        process in (None, jax.process_index())):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return await real(self, x, directory)
  return save_fn


def sitecustomize_dir(directory, step: int, process: int | None = None) -> str:
  """A directory to put on a subprocess's PYTHONPATH: its Python starts with
  :func:`disk_full_at` ``(step, process)`` installed."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "sitecustomize.py"), "w", encoding="utf-8") as f:
    f.write("import orbax.checkpoint as ocp\nfrom tests import faults\n"
            f"ocp.JsonCheckpointHandler._save_fn = faults.disk_full_at({step}, {process})\n")
  return os.fspath(directory)
