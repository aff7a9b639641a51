"""Checkpoint faults: a failed save (a full disk, injected) ends the run in one line naming the
step, the directory and the cause, keeping the last good checkpoint; a NaN stop with a failed
save still reports the NaN; an unreadable newest checkpoint is refused, or skipped on request."""

import asyncio
import logging
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest
import tensorstore as ts

from genjax import methods
from genjax import models
from genjax import runs
from genjax import train
from genjax.errors import CheckpointError
from genjax.errors import NonFiniteError
from tests import faults
from tests.conftest import TINY_DCGAN_FLAGS
from tests.conftest import run_main
from tests.conftest import tiny_config
from tests.test_errors import error_lines
from tests.test_errors import snapshot
from tests.test_resume import committed_steps
from tests.test_resume import saved_state

FULL = "OSError: [Errno 28] No space left on device"


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_failed_save_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                      asynchronous):
  """Asynchronous, the save of step 4 fails in Orbax's thread and surfaces at the save of
  step 6; synchronous, in place. keep_checkpoints=1: step 2 survives the save meant to replace
  it, and a rerun resumes from it."""
  monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", faults.disk_full_at(4))
  c = tiny_config("ae", num_steps=6, keep_checkpoints=1, async_checkpoints=asynchronous)
  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(c, str(tmp_path))
  msg, ckpts = str(info.value), tmp_path / "checkpoints"
  assert "\n" not in msg
  assert msg.startswith(f"saving checkpoint step 4 in {ckpts} failed ({FULL}); stopped, the "
                        f"last good checkpoint (step 2) is kept in {ckpts}: free space"), msg
  assert committed_steps(tmp_path) == [2] and int(saved_state(tmp_path, 2)["step"]) == 2

  monkeypatch.undo()  # space freed: the same command resumes from step 2
  assert train.train_and_evaluate(c, str(tmp_path)).step == 6
  assert committed_steps(tmp_path) == [6]


def test_a_failed_background_save_ends_the_command_in_one_line(tmp_path):
  site = faults.sitecustomize_dir(tmp_path / "site",
                                 "ocp.JsonCheckpointHandler._save_fn = faults.disk_full_at(4)")
  out = run_main(tmp_path / "run", *TINY_DCGAN_FLAGS, "--config.num_steps=6",
                 "--config.checkpoint_every=2", "--config.log_every=2",
                 "--config.sample_every=1000", env_extra={"PYTHONPATH": site})
  assert out.returncode == 2, out.stderr[-3000:]
  lines = error_lines(out.stderr)
  assert len(lines) == 1, out.stderr[-3000:]
  assert (f"saving checkpoint step 4 in {tmp_path / 'run' / 'checkpoints'} failed ({FULL}); "
          f"stopped, the last good checkpoint (step 2) is kept") in lines[0]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert committed_steps(tmp_path / "run") == [2]


@pytest.mark.parametrize("poisoned", ["loss", "params"])
def test_a_nan_stop_with_a_failed_save_reports_the_nan(tmp_path, monkeypatch, poisoned):
  """The save of step 2 fails in the background, then step 3's loss (or its parameters) is NaN:
  the NaN is the error, and it mentions the failed save."""
  monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", faults.disk_full_at(2))
  method_cls = methods.get(models.get("ae").METHOD)
  real_step = method_cls.step

  def step(self, state, batch):
    new, metrics = real_step(self, state, batch)

    def nan(x):  # from the third update on
      return jnp.where(state.step >= 2, jnp.nan, x)
    if poisoned == "loss":
      return new, jax.tree.map(nan, metrics)
    return new.replace(params=jax.tree.map(nan, new.params)), metrics
  monkeypatch.setattr(method_cls, "step", step)
  c = tiny_config("ae", num_steps=6, log_every=1, checkpoint_every=1, keep_checkpoints=5)
  with pytest.raises(NonFiniteError) as info:
    train.train_and_evaluate(c, str(tmp_path))
  msg = str(info.value)
  assert "\n" not in msg
  assert msg.startswith({"loss": "non-finite loss at step 3 (",
                         "params": "the parameters became non-finite by step 3;"}[poisoned]), msg
  assert (f"the last good checkpoint (step 1) is kept in {tmp_path / 'checkpoints'} (saving "
          f"step 2 failed too: {FULL})") in msg
  assert committed_steps(tmp_path) == [1]


def damage(step_dir, what: str) -> None:
  """Overwrites a checkpoint's array files, or truncates its metadata (a JSON file)."""
  if what == "metadata":
    path = step_dir / "meta" / "metadata"
    path.write_bytes(path.read_bytes()[:20])
    return
  for root, _, files in os.walk(step_dir / "state"):
    for name in files:
      if "ocdbt" in root or name.startswith("d"):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")


@pytest.mark.parametrize("what", ["arrays", "metadata"])
def test_an_unreadable_newest_checkpoint_is_refused_unless_skipped(tmp_path, caplog, what):
  train.train_and_evaluate(tiny_config("ae", num_steps=4), str(tmp_path))
  ckpts = tmp_path / "checkpoints"
  assert committed_steps(tmp_path) == [2, 4]
  damage(ckpts / "4", what)
  before = snapshot(ckpts)

  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(tiny_config("ae", num_steps=6), str(tmp_path))
  msg = str(info.value)
  assert "\n" not in msg and f"checkpoint step 4 in {ckpts} is unreadable (" in msg
  assert msg.endswith("; to resume from the newest readable earlier checkpoint (steps 2), rerun "
                      "with --config.resume_skip_corrupt=True, which moves this one aside to "
                      "4.corrupt"), msg
  assert snapshot(ckpts) == before

  caplog.set_level(logging.INFO)
  result = train.train_and_evaluate(tiny_config("ae", num_steps=6, resume_skip_corrupt=True),
                                    str(tmp_path))
  assert result.step == 6 and committed_steps(tmp_path) == [2, 4, 6]
  # the skipped checkpoint is kept whole under another name, out of the way of the new step 4
  assert snapshot(ckpts / "4.corrupt") == {os.path.relpath(k, "4"): v for k, v in before.items()
                                           if k.startswith("4" + os.sep)}
  assert int(saved_state(tmp_path, 4)["step"]) == 4
  skipped = [r.getMessage() for r in caplog.records if "moved it aside" in r.getMessage()]
  assert len(skipped) == 1 and f"checkpoint step 4 in {ckpts} is unreadable (" in skipped[0]
  assert skipped[0].endswith(f"; moved it aside to {ckpts / '4.corrupt'}")
  assert f"resumed from {ckpts} at step 2" in caplog.text


def test_with_no_readable_checkpoint_left_the_flag_starts_afresh(tmp_path, caplog):
  """Nothing is overwritten either: a second unreadable step 2 goes to 2.corrupt-2."""
  ckpts = tmp_path / "checkpoints"
  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  damage(ckpts / "2", "metadata")
  with pytest.raises(CheckpointError) as info:
    train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  assert str(info.value).endswith("; to start afresh (there is no earlier one), rerun with "
                                  "--config.resume_skip_corrupt=True, which moves this one "
                                  "aside to 2.corrupt")
  caplog.set_level(logging.WARNING)
  for aside in ("2.corrupt", "2.corrupt-2"):
    before = snapshot(ckpts / "2")
    caplog.clear()
    result = train.train_and_evaluate(tiny_config("ae", num_steps=2, resume_skip_corrupt=True),
                                      str(tmp_path))
    assert result.step == 2 and committed_steps(tmp_path) == [2]
    assert snapshot(ckpts / aside) == before
    assert f"no readable checkpoint is left in {ckpts}: training starts afresh" in caplog.text
    damage(ckpts / "2", "metadata")


def test_reading_a_run_leaves_its_saves_under_way_alone(tmp_path):
  """genjax.cli.evaluate or a frozen network may read a run that is training: the temporary
  directory of its save under way is not a leftover to clean."""
  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  under_way = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1764633600"
  (under_way / "state").mkdir(parents=True)
  runs.restore_run(tmp_path)
  assert under_way.is_dir()


_ABANDONED = []  # the reads' tasks, kept from asyncio's "destroyed but pending" warning


def _late_read_on_a_closed_loop() -> None:
  """What a TensorStore read still in flight when a restore fails does: it finishes after
  Orbax closed the restore's event loop, whose closed-loop error is reported as unraisable."""
  promise, future = ts.Promise.new()

  async def restore():
    _ABANDONED.append(asyncio.ensure_future(future))  # another array's read, still under way
    await asyncio.sleep(0)
    raise OSError("one array's read failed")
  loop = asyncio.new_event_loop()
  with pytest.raises(OSError):
    loop.run_until_complete(restore())
  loop.close()
  promise.set_result(0)


# Orbax's reading coroutine, as compiled from its module: it turns whatever stops it, even the
# GeneratorExit of its collection, into an exception of its own
_ORBAX_READ = compile("""
async def _read_array_index_and_device_put(future):
  try:
    await future
  except BaseException as e:
    raise Exception("Encountered error while reading array index: (slice(0, 8, 1),)") from e
""", os.path.join(os.sep, "venv", "orbax", "checkpoint", "_src", "serialization",
                  "serialization.py"), "exec")


def _abandoned_reads() -> None:
  """What the reads a failed restore abandons report: a late result for the closed loop, a
  reading coroutine left unfinished (collected), a reading task whose failure nobody saw."""
  _late_read_on_a_closed_loop()
  scope = {}
  exec(_ORBAX_READ, scope)  # pylint: disable=exec-used
  read = scope["_read_array_index_and_device_put"]
  loop = asyncio.new_event_loop()
  unfinished = read(loop.create_future())
  unfinished.send(None)  # waits for its read
  del unfinished  # "Exception ignored in: <coroutine object _read_array_index_and_device_put>"
  failed = loop.create_future()
  failed.set_exception(OSError("OUT_OF_RANGE: Requested byte range"))
  task = loop.create_task(read(failed))
  loop.run_until_complete(asyncio.sleep(0.01))
  loop.close()
  del task  # asyncio logs "Task exception was never retrieved"
  read(failed).__del__()  # never started: "coroutine ... was never awaited"


def test_reads_outliving_a_failed_restore_print_nothing(tmp_path, monkeypatch, caplog):
  """From the first restore on, what a failed restore's abandoned reads report is dropped: in a
  multi-process run it was up to 100 KB of tracebacks per process beside the one-line error or
  warning, and a process that filled its stderr pipe stopped there (a test that read the other
  process's pipe first hung). Any other unraisable exception or asyncio error is still
  reported."""
  reported = []
  monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
  monkeypatch.setattr(warnings, "filters", list(warnings.filters))  # as no restore left them
  monkeypatch.setattr(warnings, "showwarning", lambda message, *_: reported.append(message))
  monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])  # as no restore left them
  asyncio_errors = lambda: [r.getMessage().splitlines()[0] for r in caplog.records  # pylint: disable=unnecessary-lambda-assignment
                            if r.name == "asyncio"]
  _abandoned_reads()
  assert [str(e) for e in reported] == [  # reported until a restore
      "Event loop is closed", "Encountered error while reading array index: (slice(0, 8, 1),)",
      "coroutine '_read_array_index_and_device_put' was never awaited"]
  assert asyncio_errors() == ["Task exception was never retrieved"]

  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  damage(tmp_path / "checkpoints" / "2", "arrays")
  with pytest.raises(CheckpointError, match="is unreadable"):
    train.train_and_evaluate(tiny_config("ae", num_steps=4), str(tmp_path))
  reported.clear()
  caplog.clear()
  _abandoned_reads()

  class Broken:
    def __del__(self):
      raise ValueError("a finaliser failed")
  Broken()

  async def fails():
    raise ValueError("a task of someone else's")
  loop = asyncio.new_event_loop()
  task = loop.create_task(fails())
  loop.run_until_complete(asyncio.sleep(0.01))
  loop.close()
  del task
  assert [str(e) for e in reported] == ["a finaliser failed"]
  assert asyncio_errors() == ["Task exception was never retrieved"]
  assert "fails()" in caplog.records[-1].getMessage()
