"""Exact resume: a run killed mid-way and restarted ends bit-identical to an uninterrupted one;
checkpoints restore onto a different device count."""

import os
import signal
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.conftest import TINY_DCGAN_FLAGS
from tests.conftest import run_main


def committed_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def saved_state(workdir, step):
  """The saved TrainState as a tree of arrays on this process's first device, whatever
  topology wrote it."""
  path = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as ckptr:
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          ckptr.metadata(path).item_metadata.tree)
    return ckptr.restore(path, target)


def assert_bit_identical(a, b):
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree_util.tree_leaves(b)
  assert len(flat_a) == len(flat_b) > 10
  for (path, x), y in zip(flat_a, flat_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def test_killed_run_resumes_bit_identically(tmp_path):
  flags = (*TINY_DCGAN_FLAGS, "--config.num_steps=60", "--config.checkpoint_every=10",
           "--config.log_every=1", "--config.sample_every=1000")
  full = run_main(tmp_path / "full", *flags)
  assert full.returncode == 0, full.stderr[-2000:]

  killed = tmp_path / "killed"
  proc = run_main(killed, *flags, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
  for line in proc.stderr:
    if " step 25/60 " in line:
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait(timeout=60)
  proc.stderr.close()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  steps = committed_steps(killed)
  assert steps and 10 <= steps[-1] < 60  # the step-20 save may still have been in flight

  resumed = run_main(killed, *flags)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resumed from {killed / 'checkpoints'} at step {steps[-1]}" in resumed.stderr
  assert_bit_identical(saved_state(killed, 60), saved_state(tmp_path / "full", 60))


def test_checkpoint_restores_onto_another_device_count(tmp_path):
  """Saved under pmap on 8 devices, resumed with the mesh on 2: the continued run matches one
  that ran on a single device throughout (to float32 reduction-order tolerance)."""
  flags = (*TINY_DCGAN_FLAGS, "--config.checkpoint_every=2", "--config.log_every=2",
           "--config.sample_every=1000", "--config.keep_checkpoints=5")
  first = run_main(tmp_path / "moved", *flags, "--config.num_steps=2", "--config.parallel=pmap",
                   devices=8)
  assert first.returncode == 0, first.stderr[-2000:]
  second = run_main(tmp_path / "moved", *flags, "--config.num_steps=3", devices=2)
  assert second.returncode == 0, second.stderr[-2000:]
  assert "at step 2" in second.stderr and committed_steps(tmp_path / "moved") == [2, 3]
  single = run_main(tmp_path / "single", *flags, "--config.num_steps=3", devices=1)
  assert single.returncode == 0, single.stderr[-2000:]
  moved, reference = saved_state(tmp_path / "moved", 3), saved_state(tmp_path / "single", 3)
  assert int(moved["step"]) == 3
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(moved),
                          jax.tree_util.tree_leaves(reference)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=jax.tree_util.keystr(path))
