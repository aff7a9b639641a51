"""End to end through train_and_evaluate: every family trains, logs, samples and checkpoints."""

import glob
import logging
import os
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2

from genjax import checkpoint
from genjax import runs
from genjax import train
from tests.conftest import REPO, TINY_DCGAN_FLAGS, tiny_config, xla_flags

FAMILIES = {
    "ae": ("ae", {}),
    "dae": ("ae", {"method.corruption": "mask", "method.corruption_level": 0.4}),
    "vae": ("vae", {"method.binarize": True}),
    "dcgan": ("dcgan", {}),
}


def read_events(workdir):
  """(scalar tags with their steps, image tags) from the TensorBoard event files of a run."""
  scalars, images = {}, set()
  for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
    with open(path, "rb") as f:
      while header := f.read(12):
        (length,) = struct.unpack("<Q", header[:8])
        event = event_pb2.Event.FromString(f.read(length))
        f.read(4)
        for value in event.summary.value:
          if value.HasField("image"):
            images.add(value.tag)
          else:
            scalars.setdefault(value.tag, []).append(event.step)
  return scalars, images


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_trains_end_to_end(tmp_path, caplog, name):
  family, overrides = FAMILIES[name]
  c = tiny_config(family, **overrides)
  caplog.set_level(logging.INFO)
  result = train.train_and_evaluate(c, str(tmp_path))

  assert result.step == 4 and int(result.state.step) == 4 and result.signal is None
  assert result.metrics and all(np.isfinite(v) for v in result.metrics.values())
  # Parameters moved away from their initial values.
  init = runs.build_method(c).init(jax.random.PRNGKey(c.seed))
  moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(result.state.params),
                                                 jax.tree.leaves(init.params))]
  assert sum(moved) >= len(moved) // 2

  # Console: step, losses, steps/s, images/s and ETA every log_every steps.
  lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
  assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
  assert all("img/s" in line and "ETA" in line and "loss" in line for line in lines)
  # PNG grids at the sample interval and the end; TensorBoard scalars and images.
  pngs = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "samples" / "*.png")))
  assert pngs, "no sample grid written"
  grid = np.asarray(Image.open(tmp_path / "samples" / pngs[0]))
  assert grid.ndim == 2 and grid.std() > 0  # grayscale, not blank
  assert result.sample_paths and all(os.path.exists(p) for p in result.sample_paths)
  scalars, images = read_events(str(tmp_path))
  assert {"perf/steps_per_sec", "perf/images_per_sec"} <= set(scalars)
  assert any(tag.startswith("learning_rate/") for tag in scalars)
  assert scalars["train/" + ("loss_d" if family == "dcgan" else "loss")] == [2, 4]
  assert images and all(tag.startswith("samples/") for tag in images)
  # Checkpoints every 2 steps, keeping the last 3; the final one holds the returned state.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]


def test_vae_logs_reconstruction_and_kl_and_draws_prior_samples(tmp_path):
  result = train.train_and_evaluate(tiny_config("vae"), str(tmp_path))
  assert {"nll", "kl", "loss"} <= set(result.metrics)
  assert result.metrics["loss"] == pytest.approx(result.metrics["nll"] + result.metrics["kl"],
                                                 rel=1e-4)
  for grid in ("reconstructions", "prior_samples", "interpolation"):
    assert os.path.exists(tmp_path / "samples" / f"{grid}.png")


def test_bf16_compute_keeps_float32_params_and_ema(tmp_path):
  c = tiny_config("dcgan", dtype="bfloat16", ema_decay=0.9)
  result = train.train_and_evaluate(c, str(tmp_path))
  assert all(np.isfinite(v) for v in result.metrics.values())
  dtypes = {x.dtype for x in jax.tree.leaves(result.state.params)}
  assert dtypes == {jnp.dtype("float32")}
  ema, params = result.state.ema["generator"], result.state.params["generator"]
  assert jax.tree.structure(ema) == jax.tree.structure(params)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(params)))
  # The EMA weights are part of the checkpoint.
  sig = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=1).read_meta(4)[
      "signature"]
  assert any(path.startswith(".ema['generator']") for path in sig)


def test_pmap_strategy_end_to_end_on_real_data(tmp_path):
  c = tiny_config("dcgan", parallel="pmap", **{"dataset.name": "fashion_mnist"})
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result.step == 4 and all(np.isfinite(v) for v in result.metrics.values())


def test_finished_run_is_not_retrained(tmp_path, caplog):
  c = tiny_config("ae")
  first = train.train_and_evaluate(c, str(tmp_path))
  caplog.set_level(logging.INFO)
  again = train.train_and_evaluate(c, str(tmp_path))
  assert again.step == first.step == 4
  assert "already at step 4 of 4" in caplog.text


def test_gan_zoo_family_end_to_end_keeps_power_iteration_vectors_in_checkpoints(tmp_path):
  c = tiny_config("sngan", **{"method.loss": "hinge", "ema_decay": 0.9})
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result.step == 4 and all(np.isfinite(v) for v in result.metrics.values())
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=1, asynchronous=False)
  sig = ckpt.read_meta(4)["signature"]
  u_paths = [p for p in sig if p.startswith(".buffers['discriminator']") and "'u'" in p]
  assert u_paths, "spectral norm's power-iteration vectors are not in the checkpoint"
  method = runs.build_method(c)
  sharding = jax.sharding.NamedSharding(jax.make_mesh((1,), ("d",), devices=jax.devices()[:1]),
                                        jax.sharding.PartitionSpec())
  restored, _ = ckpt.restore(4, jax.eval_shape(method.init, jax.random.PRNGKey(0)),
                             sharding=sharding, model="sngan")
  ckpt.close()
  for a, b in zip(jax.tree.leaves(restored.buffers), jax.tree.leaves(result.state.buffers)):
    np.testing.assert_array_equal(a, b)
  init = method.init(jax.random.PRNGKey(c.seed)).buffers["discriminator"]
  assert changed_any(init, result.state.buffers["discriminator"])
  assert os.path.exists(tmp_path / "samples" / "samples.png")


def changed_any(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_failing_kernel_ends_the_run_in_one_line_keeping_the_last_checkpoint(tmp_path):
  """A oneDNN call that fails at run time (injected once the step-2 checkpoint is saved) on one
  of 8 devices. It used to leave the other devices waiting in a collective until XLA's
  rendezvous timed out and aborted the process; now `genjax.cli.train` prints one line, exits 2 and
  keeps the step-2 checkpoint, which restores."""
  script = (
      "import sys; from absl import app; from genjax import checkpoint, kernels\n"
      "from genjax.cli import train as cli\n"
      "save = checkpoint.Checkpointer.save\n"
      "def save_then_fail(self, step, *args):\n"
      "  save(self, step, *args)\n"
      "  kernels.inject_failures(1)  # the next oneDNN call, in step 3\n"
      "checkpoint.Checkpointer.save = save_then_fail\n"
      "app.run(cli.main, argv=sys.argv, flags_parser=cli.parse_flags)\n")
  env = {**os.environ, "XLA_FLAGS": xla_flags(8),
         "PYTHONPATH": str(REPO)}
  failed = subprocess.run(
      [sys.executable, "-c", script, f"--workdir={tmp_path}",
       "--config=experiments/configs/dcgan_fashion_mnist.py", *TINY_DCGAN_FLAGS,
       "--config.conv_backend=onednn", "--config.checkpoint_every=2", "--config.log_every=2",
       "--config.num_steps=4"], cwd=REPO, env=env, text=True, capture_output=True, timeout=300)
  assert failed.returncode == 2, failed.stderr[-2000:]
  assert "Fatal Python error" not in failed.stderr and "rendezvous" not in failed.stderr
  error = [line for line in failed.stderr.splitlines() if line.startswith("genjax: error:")]
  assert error == [f"genjax: error: a kernel failed at or before step 4 (onednn conv: injected "
                   f"failure (a test's)); stopped, the last good checkpoint (step 2) is kept in "
                   f"{tmp_path}/checkpoints"]
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=3, asynchronous=False)
  assert ckpt.manager.all_steps() == [2]
  _, state, _ = runs.restore_run(str(tmp_path))
  assert int(state.step) == 2 and bool(train._all_finite(state))


def test_a_run_starts_without_importing_torch_or_scipys_slow_modules(tmp_path):
  """Every training process pays its imports (the multi-process tests and launches start dozens):
  the trainer and its TensorBoard writer leave PyTorch (about 3 s; tensorboardX imports it only
  to accept its tensors), scipy.stats and scipy.optimize (about a second each) unimported, and
  PyTorch still imports afterwards."""
  script = f"""
import sys
from genjax import reporting, runs, train
reporter = reporting.Reporter({str(tmp_path)!r}, num_steps=1, batch_size=1, value_range=(0, 1))
reporter.scalars(1, {{"loss": 1.0}}, steps_per_sec=1.0, learning_rates={{}})
print(sorted(m for m in ("torch", "scipy.stats", "scipy.optimize") if m in sys.modules))
import torch
print(torch.zeros(1).shape)
"""
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.splitlines() == ["[]", "torch.Size([1])"]
