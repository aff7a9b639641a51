"""Injected checkpoint faults, for tests in the pytest process or in a ``python -m
genjax.cli.train`` subprocess (through a ``sitecustomize`` module: :func:`sitecustomize_dir`)."""

import errno
import os
import time

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


def slow_compile(seconds: float, process: int):
  """A replacement for ``jax.stages.Lowered.compile`` (ahead-of-time compiles: genjax's
  multi-process step) that first sleeps ``seconds`` in process ``process``: a slow compiler."""
  real = jax.stages.Lowered.compile

  def compile_(self, *args, **kwargs):
    if jax.process_index() == process:
      time.sleep(seconds)
    return real(self, *args, **kwargs)
  return compile_


def slow_close(seconds: float, process: int):
  """A replacement for ``ocp.CheckpointManager.close`` that sleeps ``seconds`` in process
  ``process`` the first time it is called: one process slower than the others to close down
  (after an error, say)."""
  real, slept = ocp.CheckpointManager.close, []

  def close(self):
    if jax.process_index() == process and not slept:
      slept.append(time.sleep(seconds))
    return real(self)
  return close


def sitecustomize_dir(directory, install: str) -> str:
  """A directory to put on a subprocess's PYTHONPATH: its Python starts by running the
  statement ``install`` after ``import jax, orbax.checkpoint as ocp; from tests import faults``
  (e.g. ``ocp.JsonCheckpointHandler._save_fn = faults.disk_full_at(4)``)."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "sitecustomize.py"), "w", encoding="utf-8") as f:
    f.write(f"import jax\nimport orbax.checkpoint as ocp\nfrom tests import faults\n{install}\n")
  return os.fspath(directory)
