"""Multi-process training on localhost with jax.distributed (gloo collectives), real processes.

Tolerance for the cross-topology comparison: rtol 1e-5 / atol 1e-6 after 2 SGD steps (measured:
1.7e-7). The runs differ only in the order in which gloo and the in-process all-reduce sum
gradients and statistics; a tiny GAN on batches of 16 amplifies such rounding quickly (4.5e-5
after 4 steps), so the comparison is made early.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from tests.conftest import REPO
from tests.conftest import TINY_DCGAN_FLAGS
from tests.conftest import run_main
from tests.conftest import xla_flags
from tests import faults
from tests.test_checkpoint_faults import FULL
from tests.test_checkpoint_faults import damage
from tests.test_errors import error_lines
from tests.test_errors import snapshot
from tests.test_resume import assert_bit_identical
from tests.test_resume import committed_steps
from tests.test_resume import saved_state

SGD = ("--config.optimizer.name=sgd", "--config.optimizer.learning_rate=0.05",
       "--config.optimizer.b1=0.0")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(workdir, *flags, processes=2, devices=2, timeout_s=10, logs=None, pythonpath=()):
  """Starts ``processes`` genjax processes of ``devices`` CPU devices each; returns the Popens.
  Their stderr is a pipe, or the file ``logs[i]`` for process i. ``pythonpath``: directories
  before the repository's (a sitecustomize that injects faults)."""
  port = free_port()
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
             PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(REPO)]))
  procs = []
  for i in range(processes):
    with open(logs[i], "w") if logs else contextlib.nullcontext(subprocess.PIPE) as stderr:
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "genjax.cli.train",
           "--config=experiments/configs/dcgan_fashion_mnist.py", f"--workdir={workdir}",
           *TINY_DCGAN_FLAGS, *flags, f"--coordinator_address=127.0.0.1:{port}",
           f"--num_processes={processes}", f"--process_id={i}",
           f"--distributed_timeout={timeout_s}"],
          cwd=REPO, env=env, text=True, stdout=subprocess.DEVNULL, stderr=stderr))
    procs[-1].log = logs[i] if logs else None
  return procs


def finish(procs, timeout=300, *, check=True):
  """Their stderr (or log files) once all have exited; ``check``: each with status 0. Processes
  still running after ``timeout`` seconds (a hang) fail the test with every thread's stack of
  each (SIGUSR1: ``genjax.cli.train`` registers faulthandler), and all are killed. Every pipe is
  read meanwhile: a process whose pipe fills stops at its next write (reading process 0's to its
  end first once hung a run whose process 1 had more to say, while process 0 waited for it)."""
  outs = [""] * len(procs)

  def drain(i):
    outs[i] = procs[i].stderr.read()
    procs[i].stderr.close()
  readers = [threading.Thread(target=drain, args=(i,), daemon=True)
             for i, p in enumerate(procs) if p.log is None]
  for reader in readers:
    reader.start()
  deadline = time.monotonic() + timeout
  try:
    for p in procs:
      try:
        p.wait(timeout=max(deadline - time.monotonic(), 0.1))
      except subprocess.TimeoutExpired:
        pass
    hung = [i for i, p in enumerate(procs) if p.poll() is None]
    for i in hung:
      procs[i].send_signal(signal.SIGUSR1)
    time.sleep(5 if hung else 0)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
    for reader in readers:
      reader.join(timeout=60)
  outs = [out if p.log is None else p.log.read_text() for p, out in zip(procs, outs)]
  assert not hung, "\n".join(f"process {i} still ran after {timeout}s; its stderr ends:\n"
                             f"{outs[i][-12000:]}" for i in hung)
  if check:  # every failed process's log: the first to fail is not always process 0
    failed = [f"process {i} exited {p.returncode}:\n{err[-3000:]}"
              for i, (p, err) in enumerate(zip(procs, outs)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
  return outs


def digests(stderr: str) -> list[str]:
  return re.findall(r"final state at step \d+: sha256 ([0-9a-f]+)", stderr)


@pytest.mark.parametrize("strategy", ["mesh", "pmap"])
def test_two_processes_match_one_process_then_resume_on_one(tmp_path, strategy):
  flags = (*SGD, "--config.num_steps=2", "--config.log_every=1", "--config.checkpoint_every=2",
           "--config.sample_every=2", f"--config.parallel={strategy}")
  # Under mesh, process 1 compiles its step 35 s later than process 0, longer than gloo waits
  # for a collective's peers: the processes start their first step together all the same.
  slow = [faults.sitecustomize_dir(tmp_path / "site", "jax.stages.Lowered.compile = "
                                   "faults.slow_compile(35, process=1)")] * (strategy == "mesh")
  # The one-process reference runs meanwhile (mostly while process 1 sleeps): the processes
  # log to files, not pipes that nobody reads until it ends.
  procs = launch(tmp_path / "multi", *flags, pythonpath=slow,
                 logs=[tmp_path / f"{i}.log" for i in range(2)])
  single = run_main(tmp_path / "single", *TINY_DCGAN_FLAGS, *flags, devices=4)
  errs = finish(procs)
  assert single.returncode == 0, single.stderr[-3000:]

  # Every process holds the same parameters; each console line names its process.
  (d0,), (d1,) = digests(errs[0]), digests(errs[1])
  assert d0 == d1
  assert "[process 1] step 2/2" in errs[1] and "[process 0] step 2/2" in errs[0]
  # Same global batches and global-batch semantics as one process with 4 devices.
  multi, ref = saved_state(tmp_path / "multi", 2), saved_state(tmp_path / "single", 2)
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(multi),
                          jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # Only process 0 wrote the logs and sample grids.
  assert len(os.listdir(tmp_path / "multi" / "tensorboard")) == 1
  assert (tmp_path / "multi" / "samples" / "samples.png").exists()

  if strategy == "pmap":
    return  # the checkpoint is the same: its restore on one device is checked once, with mesh
  # The 2-process checkpoint restores in a single process with one device.
  resumed = run_main(tmp_path / "multi", *TINY_DCGAN_FLAGS, *flags[:-1], "--config.num_steps=3",
                     devices=1)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "at step 2" in resumed.stderr and committed_steps(tmp_path / "multi")[-1] == 3


def test_killed_two_process_run_resumes_exactly_past_an_unreadable_checkpoint(tmp_path):
  """Both processes are killed (SIGKILL) after step 7 and the newest checkpoint (6) is damaged.
  Both refuse it with the same one line and change nothing; with the flag, process 0 alone
  moves it aside (between two barriers) and both resume from step 3 in step with each other, to
  the uninterrupted run's state bit for bit."""
  # Synchronous saves: step 6 is committed by the time step 7 is logged.
  flags = ("--config.num_steps=10", "--config.checkpoint_every=3", "--config.sample_every=1000",
           "--config.async_checkpoints=False")
  # The uninterrupted run syncs with the host only every 10 steps (the bounded dispatch queue
  # must keep gloo from starving); the killed one logs every step so the test can see its progress.
  finish(launch(tmp_path / "full", *flags, "--config.log_every=10"))
  flags = (*flags, "--config.log_every=1")
  workdir, ckpts = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
  procs = launch(workdir, *flags)
  for line in procs[0].stderr:
    if " step 7/10 " in line:
      break
  for p in procs:
    p.send_signal(signal.SIGKILL)
  for p in procs:
    p.wait(timeout=60)
    p.stderr.close()
  assert committed_steps(workdir) == [3, 6]
  damage(ckpts / "6", "arrays")
  before = snapshot(ckpts)

  procs = launch(workdir, *flags)
  for p, err in zip(procs, finish(procs, check=False)):
    assert p.returncode == 2, err[-3000:]
    (line,) = error_lines(err)
    assert f"checkpoint step 6 in {ckpts} is unreadable (" in line, err[-3000:]
    assert line.endswith("rerun with --config.resume_skip_corrupt=True, which moves this one "
                         "aside to 6.corrupt"), line
    assert "Traceback" not in err, err[-3000:]
  assert snapshot(ckpts) == before

  errs = finish(launch(workdir, *flags, "--config.resume_skip_corrupt=True"))
  assert "6.corrupt" in os.listdir(ckpts) and committed_steps(workdir)[-1] == 10
  assert snapshot(ckpts / "6.corrupt") == {os.path.relpath(k, "6"): v for k, v in before.items()
                                           if k.startswith("6" + os.sep)}
  for err in errs:
    assert f"moved it aside to {ckpts / '6.corrupt'}" in err, err[-3000:]
    assert f"resumed from {ckpts} at step 3" in err
  (d0,), (d1,) = digests(errs[0]), digests(errs[1])
  assert d0 == d1
  assert_bit_identical(saved_state(workdir, 10), saved_state(tmp_path / "full", 10))


def test_a_long_wait_at_a_barrier_is_logged_and_a_short_one_is_not(monkeypatch, caplog):
  from genjax import parallel  # pylint: disable=g-import-not-at-top

  class Client:  # the coordination service's client; the others arrive after ``seconds``
    def __init__(self, seconds):
      self.seconds, self.waits = seconds, []

    def wait_at_barrier(self, name, timeout_ms):
      self.waits.append((name, timeout_ms))
      time.sleep(self.seconds)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  line = ("waited {}s at barrier genjax_first_step for the other processes (one that never "
          "arrives is stuck: kill -USR1 <its pid> prints where)")
  for seconds, reported in ((2.5, [line.format(1), line.format(2)]), (0.0, [])):
    client = Client(seconds)
    monkeypatch.setattr(parallel, "coordination_client", lambda c=client: c)
    caplog.clear()
    parallel.barrier("genjax_first_step", timeout_s=7, report_after_s=1)
    time.sleep(1.2)  # a reporter left running would log meanwhile
    assert client.waits == [("genjax_first_step", 7000)]
    assert [r.getMessage() for r in caplog.records] == reported


def test_when_a_process_dies_the_others_stop_with_an_error(tmp_path):
  procs = launch(tmp_path, "--config.num_steps=1000000", "--config.log_every=1",
                 "--config.checkpoint_every=1000000", timeout_s=5)
  for line in procs[0].stderr:
    if " step 3/" in line:
      break
  procs[1].send_signal(signal.SIGKILL)
  start = time.monotonic()
  rest = procs[0].stderr.read()  # until process 0 exits
  procs[0].wait(timeout=120)
  elapsed = time.monotonic() - start
  procs[1].wait()
  procs[1].stderr.close()
  assert procs[0].returncode != 0
  assert elapsed < 90, f"process 0 took {elapsed:.0f}s to stop"
  # The coordination service's heartbeat, or the failed collective's one line, whichever is
  # first: either names the other process.
  assert ("another task died" in rest or "unhealthy" in rest or
          "usually another process that died" in rest), rest[-3000:]


def test_a_stop_signal_to_one_process_stops_all_at_the_same_step(tmp_path):
  """SIGTERM to one process of two: both stop after the same step, at the next log step (where
  they agree), save it together and exit as a stopped run. Before the agreement the signalled
  process entered the collective save after its current step while the other ran the next
  step's collectives: both hung."""
  every, workdir = 5, tmp_path / "run"
  logs = [tmp_path / f"{i}.log" for i in range(2)]
  procs = launch(workdir, "--config.num_steps=1000000", f"--config.log_every={every}",
                 "--config.checkpoint_every=1000000", "--config.sample_every=1000000",
                 logs=logs)
  try:
    # process 0 logged a step, so both are stepping (each step is a collective of the two)
    deadline = time.monotonic() + 300  # against a hang, not a measurement
    while f" step {every}/" not in logs[0].read_text():
      assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, (
          logs[0].read_text()[-3000:])
      time.sleep(0.1)
    procs[1].send_signal(signal.SIGTERM)
    for p in procs:
      p.wait(timeout=180)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  out = [log.read_text() for log in logs]
  for p, err in zip(procs, out):
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
  (step,) = committed_steps(workdir)
  assert step % every == 0 and step > every
  for err in out:
    assert f"process 1 received SIGTERM: all 2 processes stop after step {step}" in err
    assert f"stopped by SIGTERM at step {step}; checkpoint saved" in err
  assert int(saved_state(workdir, step)["step"]) == step
  (d0,), (d1,) = digests(out[0]), digests(out[1])
  assert d0 == d1


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_save_failing_in_one_process_stops_all_in_one_line(tmp_path, asynchronous):
  """The save of step 4 fails (a full disk, injected) in process 1 only. Asynchronous, both
  hung before: process 0 waited at Orbax's barrier for process 1's write, process 1 at the next
  barrier for process 0 (20 minutes, Orbax's timeout). Now process 1 posts its failure, the
  barriers give up on it, and both stop at the save of step 6 (where they wait for step 4's)
  with one line each; synchronous, at step 4, process 0 naming process 1's failure rather than
  the lost peer of a device barrier. Step 2 is kept and the same command resumes from it.
  Asynchronous, process 1 closes down 3 s slower than process 0: a CI run's process 1 was
  aborted (SIGABRT, a C++ stack) when process 0, the coordination service's host, exited first.
  Now process 0 waits for the others to leave."""
  flags = ("--config.num_steps=6", "--config.log_every=2", "--config.checkpoint_every=2",
           "--config.sample_every=1000", f"--config.async_checkpoints={asynchronous}")
  workdir, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
  slow = "\nocp.CheckpointManager.close = faults.slow_close(3, process=1)" if asynchronous else ""
  site = faults.sitecustomize_dir(
      tmp_path / "site",
      "ocp.JsonCheckpointHandler._save_fn = faults.disk_full_at(4, process=1)" + slow)
  procs = launch(workdir, *flags, pythonpath=[site])
  errs = finish(procs, timeout=240, check=False)  # a hang is killed and fails the test
  for p, err in zip(procs, errs):
    assert p.returncode == 2 and "Traceback" not in err, err[-3000:]
  (line0,), (line1,) = error_lines(errs[0]), error_lines(errs[1])
  kept = f"; stopped, the last good checkpoint (step 2) is kept in {ckpts}: free space"
  assert f"saving checkpoint step 4 in {ckpts} failed ({FULL}){kept}" in line1, line1
  assert f"saving checkpoint step 4 in {ckpts} failed (in process 1: {FULL}){kept}" in line0, (
      line0)
  assert committed_steps(workdir) == [2]
  if not asynchronous:
    return  # what is kept is the same either way: the resume from it is checked once

  errs = finish(launch(workdir, *flags))
  assert f"resumed from {ckpts} at step 2" in errs[0]
  assert committed_steps(workdir) == [2, 4, 6]
