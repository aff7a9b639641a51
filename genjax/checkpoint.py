"""The one checkpoint path: an Orbax ``CheckpointManager`` over ``<workdir>/checkpoints``.

Each step directory holds two items: ``state`` (the whole TrainState: params, optimizer states,
EMA, BatchNorm statistics, step and RNG) and ``meta`` (JSON: data position, the model's signature
and the config). Saves are asynchronous and atomic (Orbax writes to a temporary directory and
renames it), keep the newest ``keep``, and restore onto any device count: arrays are restored
straight into the shardings the current launcher asks for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging as pylogging
import os
import re
import sys
import threading
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from genjax import errors
from genjax import parallel
from genjax.errors import CheckpointError

# Each replicated array is written whole from one device. Orbax's default on CPU splits it into
# one slice per replica to write in parallel, which costs an op-by-op slice (a dispatch and
# often a compile) per array and device: 2 s per save of a small model on 8 CPU devices, and
# nothing gained for genjax's model sizes.
logging.get_absl_logger().disabled = True  # Orbax warns about every override
try:
  ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
finally:
  logging.get_absl_logger().disabled = False


_ORBAX = os.path.join("orbax", "checkpoint", "")


def _orbax_read(name: str, filename: str) -> bool:
  """Whether coroutine ``name`` of ``filename`` is one of Orbax's that read a checkpoint."""
  return _ORBAX in filename and ("read" in name or "deserialize" in name)


class _AbandonedReadTasks(pylogging.Filter):
  """Drops asyncio's "Task exception was never retrieved" for Orbax's reading tasks."""

  def filter(self, record) -> bool:
    text = record.getMessage()
    found = re.search(r"coro=<(\w+)\(\).* defined at (\S+):\d+>", text)
    return not (text.startswith("Task exception was never retrieved") and found and
                _orbax_read(*found.groups()))


def _quiet_abandoned_reads() -> None:
  """Drops, for the rest of the process, what the reads of a failed restore report after it;
  any other report goes where it went before.

  Orbax restores on an event loop that it closes as soon as the restore returns or fails. After
  one array's read fails, the others are abandoned: reads still in flight finish later, on
  TensorStore's threads, and hand their results to the closed loop (``RuntimeError: Event loop
  is closed``); the reading coroutines left unfinished raise as they are collected ("Exception
  ignored in: <coroutine ...>"), and those never started warn ("coroutine ... was never
  awaited"); tasks that failed unobserved are logged by asyncio ("Task exception was never
  retrieved"). Most come with a traceback and TensorStore's spec of the array, beside the
  one-line error that stops the run (or the one-line warning that skips the checkpoint): up to
  100 KB per process for a small model, enough to fill a pipe nobody reads.
  Installed before every restore: a report can come before the failure is caught."""
  previous = sys.unraisablehook
  if getattr(previous, "genjax_quiet", False):
    return

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    closed_loop = (isinstance(unraisable.exc_value, RuntimeError) and
                   str(unraisable.exc_value) == "Event loop is closed")
    if not closed_loop and not (code and _orbax_read(code.co_name, code.co_filename)):
      previous(unraisable)
  hook.genjax_quiet = True
  sys.unraisablehook = hook
  pylogging.getLogger("asyncio").addFilter(_AbandonedReadTasks())
  warnings.filterwarnings("ignore", r"coroutine '\w*(read|deserialize)\w*' was never awaited",
                          RuntimeWarning)


def signature(state: Any) -> dict[str, list]:
  """``{path: [shape, dtype]}`` of every array of a (possibly abstract) state."""
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return {jax.tree_util.keystr(path): [list(np.shape(x)), str(np.dtype(x.dtype))]
          for path, x in leaves}


def fingerprint(state: Any) -> str:
  """sha256 of this process's copy of every (replicated) array of ``state``, in tree order."""
  digest = hashlib.sha256()
  for path, x in jax.tree_util.tree_flatten_with_path(state)[0]:
    local = x.addressable_shards[0].data if isinstance(x, jax.Array) else x
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(np.asarray(local)).tobytes())
  return digest.hexdigest()[:16]


def describe_mismatch(saved: dict[str, list], wanted: dict[str, list]) -> str | None:
  """The first difference between two signatures, in words; None if they match."""
  for path, spec in wanted.items():
    if path not in saved:
      return f"the checkpoint has no {path}"
    if saved[path] != spec:
      return f"{path} is {saved[path][1]}{saved[path][0]} there but {spec[1]}{spec[0]} here"
  extra = sorted(set(saved) - set(wanted))
  return f"the checkpoint has {extra[0]}, which the configured model lacks" if extra else None


class _Abandoned(Exception):
  """Raised in Orbax's threads in place of waiting at a barrier for a save that failed in
  ``process`` (maybe this one): ``cause`` is that failure's first line."""

  def __init__(self, process: int, cause: str):
    super().__init__(f"in process {process}: {cause}")
    self.process, self.cause = process, cause


def _cause(e: Exception) -> str:
  """A failed save's cause, in words: its first line, and the process if it is another's."""
  if isinstance(e, _Abandoned):
    return e.cause if e.process == jax.process_index() else str(e)
  return errors.first_line(e)


class _ReportedFuture:
  """An Orbax commit future whose failure is posted (``on_failure``) before it is raised."""

  def __init__(self, future, on_failure):
    self._future, self._on_failure = future, on_failure

  def result(self, timeout: float | None = None) -> Any:
    try:
      return self._future.result(timeout=timeout)
    except Exception as e:
      self._on_failure(e)
      raise

  def __getattr__(self, name: str) -> Any:
    return getattr(self._future, name)


class _Reported:
  """Mixin for an Orbax handler: the background writes of its saves report their failure."""

  def __init__(self, on_failure, **kwargs):
    super().__init__(**kwargs)
    self._on_failure = on_failure

  async def async_save(self, *args, **kwargs):
    futures = await super().async_save(*args, **kwargs)
    return [_ReportedFuture(f, self._on_failure) for f in futures or ()]


class _StateHandler(_Reported, ocp.StandardCheckpointHandler):
  pass


class _MetaHandler(_Reported, ocp.JsonCheckpointHandler):
  pass


class UnreadableCheckpoint(CheckpointError):
  """A checkpoint whose files cannot be read (missing, truncated or corrupt arrays or metadata):
  the one kind of refusal that ``config.resume_skip_corrupt`` may skip. A checkpoint of another
  model is never skipped: it means the wrong --workdir."""


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs by step; a context manager that closes it.

  A failed save (disk full, permission denied) raises a one-line CheckpointError naming the
  step, the directory and the cause, with the checkpoints before it kept: in place when saves
  are synchronous, else at the next :meth:`save`, :meth:`wait` or :meth:`close`, since an
  asynchronous save fails in Orbax's background thread.

  With several processes an asynchronous save that fails in one of them fails in all: each
  process waits at Orbax's barriers for the others to finish writing, and would wait there for
  one whose write failed (until Orbax's 20-minute timeout, then at the next barrier). So a
  process posts its failure to the coordination service, and the barriers (:meth:`_barrier`)
  give up on seeing it: every process raises the error at the same wait, naming the process.
  (A synchronous save fails in all at once, the others at JAX's device barrier, as a lost
  peer: they report the failure it posted.)
  """

  def __init__(self, directory: str, *, keep: int | None = None, asynchronous: bool = True,
               read_only: bool = False):
    """The training loop decides when to save (every N steps, at the end, on a signal), and
    keeps the newest ``keep`` (None: all).

    ``read_only``: for reading another run, which may be training: its temporary directories
    are its saves under way, not leftovers to clean.
    """
    self.directory = os.path.abspath(directory)
    self.asynchronous = asynchronous
    if read_only:  # Orbax warns about each writing option a reader sets
      options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    else:
      # cleanup_tmp_directories: the temporary directories of saves that a kill or a failure
      # interrupted are removed when a run (re)starts, so they cannot pile up.
      options = ocp.CheckpointManagerOptions(
          save_interval_steps=1, max_to_keep=keep, create=True,
          enable_async_checkpointing=asynchronous, cleanup_tmp_directories=True,
          async_options=(ocp.options.AsyncOptions(barrier_sync_fn=self._barrier)
                         if jax.process_count() > 1 else None))
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item, handler, save, restore in (
        ("state", _StateHandler(self._post_failure), ocp.args.StandardSave,
         ocp.args.StandardRestore),
        ("meta", _MetaHandler(self._post_failure), ocp.args.JsonSave, ocp.args.JsonRestore)):
      registry.add(item, save, handler)
      registry.add(item, restore, handler)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         handler_registry=registry)
    self._pending: int | None = None  # the step an asynchronous save is still writing

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    """Closes; a failed save is raised unless another error is already on its way, which it
    must not hide: then it is logged."""
    if exc is None:
      self.close()
      return
    step, cause = self._pending, self._finish()
    self.manager.close()
    if cause:
      logging.error("saving checkpoint step %d in %s failed too (%s)", step, self.directory,
                    cause)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of the finished checkpoints, oldest first."""
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts saving (in the background when asynchronous); atomic once finished."""
    self.wait()
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    except Exception as e:  # pylint: disable=broad-except
      # A synchronous save waits for the others at JAX's device barriers, where one whose save
      # failed shows as a lost peer: the failure it posted is the cause.
      cause = self._posted_failure()
      if cause is None:
        self._post_failure(e)
      self.manager.reload()
      raise self._save_error(step, _cause(cause or e)) from None
    self._pending = step if self.asynchronous else None

  def wait(self) -> None:
    """Blocks until the save under way is written; raises CheckpointError if it failed."""
    step, cause = self._pending, self._finish()
    if cause:
      raise self._save_error(step, cause)

  def close(self) -> None:
    """Waits for the save under way (raising CheckpointError if it failed), then closes."""
    try:
      self.wait()
    finally:
      self.manager.close()

  def kept(self) -> str:
    """Where a stopped run stands, for its error message: the newest checkpoint on disk."""
    step = self.latest_step()
    return (f"the last good checkpoint (step {step}) is kept in {self.directory}"
            if step is not None else "no checkpoint was saved yet")

  def settle(self) -> str:
    """For an error that stops the run: waits for the save under way and returns
    :meth:`kept`, mentioning that save if it failed rather than raising its error, which
    would hide the one that stops the run."""
    step, cause = self._pending, self._finish()
    return self.kept() + (f" (saving step {step} failed too: {cause})" if cause else "")

  def _finish(self) -> str | None:
    """Waits for the save under way; the first line of its error if it failed, else None."""
    self._pending = None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      # Orbax forgets the failed step, and the older ones it was to delete once the save
      # finished; on disk those are kept.
      self.manager.reload()
      return _cause(e)
    return None

  def _failures_key(self) -> str:
    return f"genjax/failed_saves/{self.directory}"

  def _post_failure(self, e: Exception) -> None:
    """Tells the other processes (if any) that this one's save failed, first failure only."""
    if jax.process_count() > 1 and not isinstance(e, _Abandoned):
      try:
        parallel.coordination_client().key_value_set(
            f"{self._failures_key()}/{jax.process_index()}", errors.first_line(e))
      except jax.errors.JaxRuntimeError:  # posted already, by another of this save's writes
        pass

  def _posted_failure(self) -> _Abandoned | None:
    """The failed save posted by the lowest-numbered process, if any."""
    if jax.process_count() == 1:
      return None
    try:
      failed = parallel.coordination_client().key_value_dir_get(self._failures_key())
    except jax.errors.JaxRuntimeError:  # the coordination service is gone: nothing to learn
      return None
    return _Abandoned(*min((int(path.rsplit("/", 1)[1]), cause) for path, cause in failed)
                      ) if failed else None

  def _barrier(self, *, key: str, timeout_ms: int) -> None:
    """Orbax's barrier between processes (its ``barrier_sync_fn``), which raises _Abandoned
    instead of waiting once a process has posted a failed save. The coordination service's
    barrier waits in a daemon thread meanwhile: it cannot be interrupted, and is left behind."""
    client, outcome = parallel.coordination_client(), []

    def wait():
      try:
        client.wait_at_barrier(key, timeout_ms)
      except Exception as e:  # pylint: disable=broad-except
        outcome.append(e)
    waiter = threading.Thread(target=wait, name=f"genjax-barrier-{key}", daemon=True)
    waiter.start()
    while waiter.is_alive():
      failed = self._posted_failure()
      if failed:
        raise failed
      waiter.join(0.1)
    if outcome:
      raise outcome[0]

  def _save_error(self, step: int, cause: str) -> CheckpointError:
    return CheckpointError(
        f"saving checkpoint step {step} in {self.directory} failed ({cause}); stopped, "
        f"{self.kept()}: free space or fix the directory's permissions, then rerun the same "
        f"command to resume")

  def read_meta(self, step: int) -> dict:
    _quiet_abandoned_reads()
    try:
      return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
          "meta"]
    except Exception as e:  # pylint: disable=broad-except
      raise UnreadableCheckpoint(f"the metadata of checkpoint step {step} in {self.directory} "
                                 f"is unreadable ({errors.first_line(e)})") from None

  def restore(self, step: int, abstract_state: Any, *, sharding: jax.sharding.Sharding,
              model: str) -> tuple[Any, dict]:
    """Restores step ``step``, shaped like ``abstract_state``, with every array in ``sharding``.

    Raises CheckpointError, touching nothing on disk, if the checkpoint belongs to a different
    model or architecture, or UnreadableCheckpoint if it cannot be read.
    """
    abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract_state)
    meta = self.read_meta(step)
    problem = None
    if meta.get("model") != model:
      problem = f"it is a {meta.get('model')!r} checkpoint but the config asks for {model!r}"
    else:
      problem = describe_mismatch(meta.get("signature", {}), signature(abstract_state))
    if problem:
      raise CheckpointError(
          f"{self.directory} holds step {step} of a different model ({problem}); refusing to "
          f"resume or overwrite it: use another --workdir or delete that directory")
    try:
      state = self._restore_state(step, abstract_state)
    except Exception as e:  # pylint: disable=broad-except
      raise UnreadableCheckpoint(f"checkpoint step {step} in {self.directory} is unreadable "
                                 f"({errors.first_line(e)})") from None
    return state, meta

  def restore_newest(self, abstract_state: Any, *, sharding: jax.sharding.Sharding, model: str,
                     skip_corrupt: bool) -> tuple[int, Any, dict] | None:
    """``(step, state, meta)`` of the newest checkpoint (see :meth:`restore`); None if none.

    An unreadable newest checkpoint raises UnreadableCheckpoint, touching nothing on disk,
    unless ``skip_corrupt``: then it is moved aside to ``<step>.corrupt`` (kept for a look, and
    out of the way of the save of that step to come) and the next older one is tried; with
    none left the run starts afresh.
    """
    skipped = False
    for step in reversed(self.all_steps()):
      try:
        state, meta = self.restore(step, abstract_state, sharding=sharding, model=model)
      except UnreadableCheckpoint as e:
        if not skip_corrupt:
          older = [str(s) for s in self.all_steps() if s < step]
          then = (f"resume from the newest readable earlier checkpoint (steps "
                  f"{', '.join(older)})" if older else "start afresh (there is no earlier one)")
          raise UnreadableCheckpoint(
              f"{e}; to {then}, rerun with --config.resume_skip_corrupt=True, which moves this "
              f"one aside to {os.path.basename(self._aside(step))}") from None
        logging.warning("skipped: %s; moved it aside to %s", e, self._move_aside(step))
        skipped = True
        continue
      return step, state, meta
    if skipped:
      logging.warning("no readable checkpoint is left in %s: training starts afresh",
                      self.directory)
    return None

  def _aside(self, step: int) -> str:
    """Where an unreadable step ``step`` goes: ``<step>.corrupt``, or ``.corrupt-<n>`` if
    that is taken."""
    path = os.path.join(self.directory, str(step))
    aside, n = f"{path}.corrupt", 1
    while os.path.exists(aside):
      n += 1
      aside = f"{path}.corrupt-{n}"
    return aside

  def _move_aside(self, step: int) -> str:
    """Renames step ``step``'s directory to :meth:`_aside`: nothing is deleted, and Orbax no
    longer lists it as a step."""
    aside = self._aside(step)
    multi = jax.process_count() > 1
    if multi:  # every process has failed to read it, and named the move, before one moves it
      ocp.multihost.sync_global_processes(f"genjax_corrupt_{step}_found")
    if jax.process_index() == 0:
      os.rename(os.path.join(self.directory, str(step)), aside)
    if multi:
      ocp.multihost.sync_global_processes(f"genjax_corrupt_{step}_moved")
    self.manager.reload()
    return aside

  def _restore_state(self, step: int, abstract_state: Any) -> Any:
    restore = lambda target: self.manager.restore(step, args=ocp.args.Composite(  # pylint: disable=unnecessary-lambda-assignment
        state=ocp.args.StandardRestore(target)))["state"]
    try:
      return restore(abstract_state)
    except ValueError as e:
      # A checkpoint from before TrainState.extra existed, of a method that keeps no state of
      # its own: restore the rest, and extra stays empty.
      if getattr(abstract_state, "extra", None) != {} or "do not match" not in str(e):
        raise
      fields = {f.name: getattr(abstract_state, f.name)
                for f in dataclasses.fields(abstract_state) if f.name != "extra"}
      return abstract_state.replace(**restore(fields))
