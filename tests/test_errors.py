"""Bad input gets one clear line and loses nothing."""

import os
import signal
import subprocess

import jax
import numpy as np
import pytest

from genjax import train
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.errors import NonFiniteError
from tests.conftest import TINY_DCGAN_FLAGS
from tests.conftest import run_main
from tests.conftest import tiny_config
from tests.test_resume import committed_steps
from tests.test_resume import saved_state


def snapshot(directory):
  """{relative path: (size, mtime)} of every file below ``directory``."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
  return out


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("genjax: error:")]


@pytest.mark.parametrize("args,devices,message", [
    (["--config.model.name=foo"], 1, "unknown model 'foo'; valid names: ae, vae, dcgan"),
    (["--config.dataset.name=foo"], 1, "unknown dataset 'foo'; valid names: mnist, "
                                       "fashion_mnist, cifar10"),
    (["--config.batch_size=12"], 8, "batch_size=12 is not divisible by the 8 devices; use a "
                                    "multiple of 8 (e.g. --config.batch_size=16)"),
    (["--config.bach_size=3"], 1, "unknown config key config.bach_size (did you mean "
                                  "'batch_size'?); config has: async_checkpoints, batch_size,"),
    (["--config.method.lamda=3"], 1, "unknown config key config.method.lamda; config.method has: "
                                     "aux_weight, clip_value,"),
    (["--config.frozen.vgg=x"], 1, "unknown config key config.frozen.vgg; config.frozen has: "
                                   "no keys"),
    (["--config.batch_size.x=3"], 1, "unknown config key config.batch_size.x: config.batch_size "
                                     "is a value, not a section"),
    (["--config.batch_size=abc"], 1, "flag --config.batch_size=abc: invalid literal for int()"),
    (["--config.parallel=spmd"], 1, "config.parallel must be one of mesh, pmap, got 'spmd'"),
    (["--config.dataset.classes=[10]"], 1, "config.dataset.classes must be labels in [0, 10) of "
                                           "'synthetic', got 10"),
    (["--config.init.from_run=/nonexistent/run"], 1, "config.init.from_run: no checkpoints in "
                                                     "/nonexistent/run/checkpoints"),
    (["--num_processes=2"], 1, "multi-process training needs all of --coordinator_address, "
                               "--num_processes and --process_id"),
    (["--distributed"], 1, "--distributed found no cluster to join (SLURM, Open MPI"),
])
def test_command_line_errors_are_one_line(tmp_path, args, devices, message):
  workdir = tmp_path / "run"
  out = run_main(workdir, *TINY_DCGAN_FLAGS, *args, devices=devices)
  assert out.returncode == 2
  lines = error_lines(out.stderr)
  assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert not (workdir / "checkpoints").exists()


def test_a_workdir_that_cannot_be_a_directory_is_one_line(tmp_path):
  a_file = tmp_path / "run"
  a_file.write_text("notes")
  config = tiny_config("ae", num_steps=1)
  with pytest.raises(ConfigError, match=f"^cannot make --workdir {a_file} \\(it is a file\\)$"):
    train.train_and_evaluate(config, str(a_file))
  with pytest.raises(ConfigError,
                     match=f"^cannot make --workdir {a_file}/sub \\(Not a directory\\)$"):
    train.train_and_evaluate(config, str(a_file / "sub"))
  assert a_file.read_text() == "notes"


def test_missing_config_file(tmp_path):
  out = run_main(tmp_path, config="experiments/configs/nope.py")
  assert out.returncode == 2
  assert error_lines(out.stderr) == [
      "genjax: error: cannot load --config=experiments/configs/nope.py: [Errno 2] No such file "
      "or directory: 'experiments/configs/nope.py'"]


def test_dataset_missing_offline_says_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.delenv("GENJAX_MNIST_DIR", raising=False)
  (tmp_path / "empty").mkdir()
  c = tiny_config("dcgan", **{"dataset.name": "mnist", "dataset.local_dir": str(tmp_path /
                                                                                 "empty"),
                              "dataset.data_dir": str(tmp_path / "tfds"),
                              "dataset.download": False})
  with pytest.raises(DataError) as info:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  msg = str(info.value)
  assert "\n" not in msg and "not available offline" in msg and "GENJAX_MNIST_DIR" in msg
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("other,match", [
    (("vae", {}), "it is a 'ae' checkpoint but the config asks for 'vae'"),
    (("ae", {"model.width": 16}), r"\.params\['model'\].*is float32\[.*\] there but float32"),
])
def test_checkpoint_of_another_model_is_refused_and_kept(tmp_path, other, match):
  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  before = snapshot(tmp_path / "checkpoints")
  family, overrides = other
  with pytest.raises(CheckpointError, match=match) as info:
    train.train_and_evaluate(tiny_config(family, num_steps=4, **overrides), str(tmp_path))
  assert "\n" not in str(info.value) and "use another --workdir" in str(info.value)
  assert snapshot(tmp_path / "checkpoints") == before


def test_corrupt_checkpoint_is_reported(tmp_path):
  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
    for name in files:
      if "ocdbt" in root or name.startswith("d"):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  before = snapshot(tmp_path / "checkpoints")
  with pytest.raises(CheckpointError, match="checkpoint step 2 in .* is unreadable") as info:
    train.train_and_evaluate(tiny_config("ae", num_steps=4), str(tmp_path))
  assert "\n" not in str(info.value)
  assert snapshot(tmp_path / "checkpoints") == before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  c = tiny_config("ae", num_steps=20, log_every=1, checkpoint_every=1, keep_checkpoints=50,
                  **{"optimizer.name": "sgd", "optimizer.learning_rate": 1e30,
                     "optimizer.b1": 0.0})
  with pytest.raises(NonFiniteError, match=r"non-finite .* at step (\d+)") as info:
    train.train_and_evaluate(c, str(tmp_path))
  msg = str(info.value)
  assert "\n" not in msg and "last good checkpoint" in msg
  steps = committed_steps(tmp_path)
  assert steps and steps[-1] < 20
  assert f"(step {steps[-1]})" in msg or f"({steps[-1]})" in msg
  last = saved_state(tmp_path, steps[-1])
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(last) if np.asarray(x).dtype.kind ==
             "f")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_then_exits(tmp_path, sig):
  proc = run_main(tmp_path, *TINY_DCGAN_FLAGS, "--config.num_steps=100000",
                  "--config.log_every=1", "--config.checkpoint_every=100000",
                  stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
  seen = []
  for line in proc.stderr:
    seen.append(line)
    if " step 2/100000 " in line:  # prints every thread's stack, and training goes on
      proc.send_signal(signal.SIGUSR1)
    if " step 3/100000 " in line:
      proc.send_signal(sig)
      break
  rest = proc.stderr.read()
  proc.wait(timeout=120)
  dump = "".join(seen) + rest
  assert proc.returncode == 128 + sig, dump[-4000:]
  assert "(most recent call first)" in dump and 'genjax/train.py", line' in dump, dump[-2000:]
  steps = committed_steps(tmp_path)
  assert len(steps) == 1 and 3 <= steps[0] < 100000
  assert f"stopped by {signal.Signals(sig).name} at step {steps[0]}; checkpoint saved" in rest
  assert int(saved_state(tmp_path, steps[0])["step"]) == steps[0]


def test_an_evaluation_that_fails_at_the_end_loses_no_step(tmp_path, monkeypatch):
  """The last step is saved before the final evaluation: its error ends the run, not the step."""
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  from tests.test_evaluation import projection_extractor  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(evaluation, "make_extractor", lambda *_: projection_extractor())

  def fail(self, state, rng):
    raise RuntimeError("the extractor ran out of memory")
  monkeypatch.setattr(evaluation.Evaluator, "__call__", fail)
  c = tiny_config("ae", num_steps=3, checkpoint_every=100,
                  **{"eval.every": 100, "eval.metrics": "kid"})
  with pytest.raises(RuntimeError, match="ran out of memory"):
    train.train_and_evaluate(c, str(tmp_path))
  assert committed_steps(tmp_path) == [3]


def test_a_stop_signal_saves_without_evaluating_unless_asked(tmp_path):
  """With evaluation configured, SIGTERM saves and exits without the evaluation (longer than a
  preemption's grace period with Inception); eval.on_stop evaluates after the save."""
  flags = (*TINY_DCGAN_FLAGS, "--config.num_steps=100000", "--config.log_every=1",
           "--config.checkpoint_every=100000", "--config.eval.every=100000",
           "--config.eval.metrics=kid", "--config.eval.num_samples=16",
           "--config.eval.num_real=64", "--config.eval.weights=experiments/classifiers/mnist",
           f"--config.eval.cache_dir={tmp_path / 'cache'}")
  for on_stop, workdir in ((False, tmp_path / "plain"), (True, tmp_path / "on_stop")):
    proc = run_main(workdir, *flags, f"--config.eval.on_stop={on_stop}",
                    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for line in proc.stderr:
      if " step 3/100000 " in line:
        proc.send_signal(signal.SIGTERM)
        break
    rest = proc.stderr.read()
    proc.wait(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, rest[-2000:]
    (step,) = committed_steps(workdir)
    assert "stopped by SIGTERM" in rest
    assert (f"eval step {step} " in rest) == on_stop, rest[-2000:]
    assert (workdir / "metrics.jsonl").exists() == on_stop


def test_temporary_directories_of_interrupted_saves_are_removed_on_start(tmp_path):
  train.train_and_evaluate(tiny_config("ae", num_steps=2), str(tmp_path))
  # what a save killed mid-way leaves (Orbax writes into <step>.orbax-checkpoint-tmp-<time>)
  left = [tmp_path / "checkpoints" / f"{s}.orbax-checkpoint-tmp-1764633600" for s in (3, 4)]
  for d in left:
    (d / "state").mkdir(parents=True)
    (d / "state" / "partial").write_bytes(b"x" * 1000)
  result = train.train_and_evaluate(tiny_config("ae", num_steps=4), str(tmp_path))
  assert result.step == 4 and committed_steps(tmp_path) == [2, 4]
  assert not any(d.exists() for d in left)
  assert not [p for p in (tmp_path / "checkpoints").iterdir() if "tmp" in p.name]
