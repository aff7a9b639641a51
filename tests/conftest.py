"""Test set-up: 8 virtual CPU devices (before jax is imported) and tiny configs."""

import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

# XLA:CPU's LLVM back end without its optimisation passes, in this process and every subprocess
# the tests start (xla_flags): the tests run a few steps of each program, so compiling is most of
# their time, and -O0 compiles in about 60% of it. IEEE semantics are kept (no fast math), but
# programs round differently from -O2's (e.g. other loops for a convolution): a comparison of
# two programs must hold for any rounding, which an ill-conditioned one shows only with a
# tolerance measured against a rounding-level perturbation (test_frozen's 8-device step).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def xla_flags(devices: int | None = None) -> str:
  """XLA_FLAGS for a test process with ``devices`` virtual CPU devices (None: jax's one)."""
  return TEST_XLA_FLAGS + ("" if devices is None else
                           f" --xla_force_host_platform_device_count={devices}")


os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags(8)}".strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent XLA cache for the session, this process's and the subprocesses' (they inherit
# the environment): the tests compile the same tiny programs many times over, and on 2 cores
# compiling is most of the suite's time. Tests that measure compilation set their own.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # else a parent's (e.g. pytest-xdist's)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="genjax-tests-xla-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_DEVICES = 8


def tiny_config(family: str, **overrides):
  """A config small enough for a CPU test: synthetic 28px data padded to 32, narrow nets."""
  from genjax.config import base_config  # pylint: disable=g-import-not-at-top
  c = base_config(family)
  c.dataset.name = "synthetic"
  c.dataset.image_size = 32
  if family in ("ae", "vae"):
    c.dataset.value_range = (0.0, 1.0)
    c.model.width = 8
    c.model.latent_dim = 8
  else:
    c.model.ngf = c.model.ndf = 8
    c.model.latent_dim = 16
  return tiny_run(c, **overrides)


def tiny_run(c, **overrides):
  """``c`` as a run of a few steps of 16 examples (saving, sampling and logging in them),
  with ``overrides`` applied."""
  c.batch_size = 16
  c.num_steps = 4
  c.log_every = 2
  c.sample_every = 4
  c.checkpoint_every = 2
  c.num_samples = 16
  c.compilation_cache_dir = ""
  return apply_overrides(c, overrides)


def apply_overrides(c, overrides: dict):
  """Sets dotted keys (``"method.loss"``) of config ``c``; returns ``c``."""
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for part in path:
      node = node[part]
    node[last] = value
  return c


def run_main(workdir, *overrides, config="experiments/configs/dcgan_fashion_mnist.py",
             devices: int = 1, timeout: float = 300, env_extra: dict | None = None, **popen):
  """Runs ``python -m genjax.cli.train`` in a fresh process (returns CompletedProcess or Popen)."""
  env = {**os.environ, **(env_extra or {})}
  env["XLA_FLAGS"] = xla_flags(devices)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  cmd = [sys.executable, "-m", "genjax.cli.train", f"--config={config}", f"--workdir={workdir}",
         *overrides]
  if popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, text=True, **popen)
  return subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout)


# Command-line overrides that make a subprocess run tiny (the dcgan config).
TINY_DCGAN_FLAGS = ("--config.dataset.name=synthetic", "--config.model.ngf=8",
                    "--config.model.ndf=8", "--config.model.latent_dim=16",
                    "--config.batch_size=16", "--config.num_samples=16",
                    "--config.compilation_cache_dir=", "--config.eval.every=0")


# A step's program on 8 devices and on one round differently, and where an input of a ReLU-type
# activation lies within that rounding of the kink, the two take different sides of it: on a
# 2-core AVX2-only EPYC, XLA's AVX2 code for the one-device DAE step (test_parallel) put one
# BatchNorm output at 5.5e-8 on the other side of 0 from the 8-device programs (which agree,
# with each other and with the one-device program compiled for AVX, --xla_cpu_max_isa=AVX, to
# 7e-6 of each update), and that one flip moved its layer's SGD update by 1.5% of the largest
# element, and the layers before it by up to 0.5%. A sharding bug moves updates by tens of
# percent (BatchNorm statistics not all-reduced: 56% of the DAE decoder's largest).
KINK = 0.05


def assert_steps_close(got, expected, start, *, rtol: float = 0.0, atol: float = 0.0,
                       kink: float = KINK, what: str = "") -> None:
  """Leaf by leaf, the state ``got`` equals ``expected``, both made by one training step from
  ``start`` (other devices or programs): to ``rtol``/``atol``, plus ``kink`` times the largest
  change the step made to the leaf (see KINK)."""
  leaves = jax.tree_util.tree_leaves_with_path(got)
  expected, start = jax.tree.leaves(expected), jax.tree.leaves(start)
  assert len(leaves) == len(expected) == len(start) > 0
  for (path, a), b, s in zip(leaves, expected, start):
    a, b, s = (np.asarray(v) for v in (a, b, s))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol + kink * np.abs(b - s).max(),
                               err_msg=f"{what}{jax.tree_util.keystr(path)}")


@pytest.fixture(scope="session", autouse=True)
def _check_devices():
  assert jax.device_count() == NUM_DEVICES, "XLA_FLAGS must be set before jax is imported"
