r"""Trains a model: the command-line entry point of :func:`genjax.train.train_and_evaluate`.

  python -m genjax.cli.train --config=experiments/configs/dcgan_fashion_mnist.py \
      --workdir=/tmp/run [--config.<key>=<value> ...]

Rerunning the same command on the same workdir resumes from its newest checkpoint. User errors
(unknown names, impossible values, missing data, incompatible checkpoints, non-finite losses)
print one line and exit with status 2; SIGTERM/SIGINT save a checkpoint and exit with 128+signal.
SIGUSR1 prints every thread's Python stack to stderr and training goes on: where a hung process
(a multi-process run waiting on a peer) is stuck.
"""

from __future__ import annotations

import difflib
import faulthandler
import logging as pylogging
import re
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from genjax import errors
from genjax.errors import GenjaxError
from genjax.errors import StepError
from genjax.errors import exit_with

config_flags.DEFINE_config_file("config", None, "Experiment config file (a get_config() module).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process: host:port of process 0's coordinator (jax.distributed).")
flags.DEFINE_integer("num_processes", None, "Multi-process: the number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process: this process's index in [0, N).")
flags.DEFINE_bool("distributed", False,
                  "Multi-process with the cluster's settings auto-detected by jax.distributed "
                  "(SLURM, Open MPI, TPU pods, ...).")
flags.DEFINE_integer("distributed_timeout", 60,
                     "Seconds after which the other processes stop if one stops responding.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _quiet_libraries(record) -> bool:
  """Drops the INFO chatter of Orbax and JAX's backend probing from the console, and cuts
  Orbax's error tracebacks to their first line: a failed background save logs a few from its
  threads, and genjax reports the failure itself, in one line with the step and directory."""
  if "/orbax/" in record.pathname and record.exc_info and record.exc_info[1] is not None:
    record.msg = f"{record.getMessage()} ({errors.first_line(record.exc_info[1])})"
    record.args, record.exc_info, record.exc_text = (), None, None
  return record.levelno >= pylogging.WARNING or not any(
      part in record.pathname for part in ("/orbax/", "/jax/_src/"))


class _ProcessTag(pylogging.Filter):
  """Prefixes every console line with the process index in multi-process runs."""

  def __init__(self, index: int):
    super().__init__()
    self.tag = f"[process {index}] "

  def filter(self, record) -> bool:
    if not str(record.msg).startswith(self.tag):
      record.msg = self.tag + str(record.msg)
    return True


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(_quiet_libraries)
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  try:
    config = FLAGS.config
    config.get("model")  # the config is loaded lazily: touch it
  except OSError as e:  # config_flags defers file errors to the first access
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    exit_with(f"cannot load --config={FLAGS['config'].config_filename}: {lines[-1]}")
  from genjax import host, parallel, train  # pylint: disable=g-import-not-at-top
  if config.tune_malloc:  # before any thread of JAX's (or jax.distributed's)
    host.tune_malloc()
  try:
    parallel.initialize_distributed(
        coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id, auto_detect=FLAGS.distributed,
        heartbeat_timeout_s=FLAGS.distributed_timeout)
  except GenjaxError as e:
    exit_with(str(e))
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    logging.get_absl_handler().addFilter(_ProcessTag(jax.process_index()))
  try:
    result = train.train_and_evaluate(config, FLAGS.workdir)
  except GenjaxError as e:
    logging.flush()
    # A failed step is usually a dead process: process 0 does not wait for it to leave.
    exit_with(str(e), None if isinstance(e, StepError) else
              lambda: parallel.leave_together(FLAGS.distributed_timeout))
  if result.signal is not None:
    sys.exit(128 + result.signal)


def _unknown_key(argv: list[str]) -> str | None:
  """``unknown config key config.a.b; config.a has: ...`` for the first override in ``argv`` of a
  key the loaded config lacks (with the closest name as a hint), or None."""
  paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  try:  # the overrides are applied while the file is parsed: parse it again, alone
    config = FLAGS["config"].parser.parse(paths[-1]) if paths else None
  except Exception:  # pylint: disable=broad-except
    return None  # the file's own error is reported instead
  for arg in argv[1:]:
    match = re.match(r"--config\.([\w.]+)(?:=|$)", arg)
    node, path = config, "config"
    for key in (match[1].split(".") if match and config is not None else ()):
      if not isinstance(node, ml_collections.ConfigDict):
        return f"unknown config key {path}.{key}: {path} is a value, not a section"
      if key not in node:
        close = difflib.get_close_matches(key, list(node), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"unknown config key {path}.{key}{hint}; {path} has: "
                f"{', '.join(sorted(node)) or 'no keys'}")
      node, path = node[key], f"{path}.{key}"
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with bad flags and config overrides reported in one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    unknown = _unknown_key(argv)
    if unknown:
      exit_with(unknown)
    if isinstance(e, flags.Error):
      exit_with(str(e))
    text = " ".join(str(e).replace("\\n", " ").split()).replace("\\'", "'").strip("'\" ")
    exit_with(f"bad --config or --config.* override: {text}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
