r"""Command-line entry point.

  python -m genjax.main --config=experiments/configs/dcgan_fashion_mnist.py --workdir=/tmp/run \
      [--config.<key>=<value> ...]

Rerunning the same command on the same workdir resumes from its newest checkpoint. User errors
(unknown names, impossible values, missing data, incompatible checkpoints, non-finite losses)
print one line and exit with status 2; SIGTERM/SIGINT save a checkpoint and exit with 128+signal.
"""

from __future__ import annotations

import logging as pylogging
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from genjax.errors import GenjaxError

config_flags.DEFINE_config_file("config", None, "Experiment config file (a get_config() module).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and samples.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def _quiet_libraries(record) -> bool:
  """Drops the INFO chatter of Orbax and JAX's backend probing from the console."""
  return record.levelno >= pylogging.WARNING or not any(
      part in record.pathname for part in ("/orbax/", "/jax/_src/"))


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(_quiet_libraries)
  from genjax import train  # pylint: disable=g-import-not-at-top
  try:
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except GenjaxError as e:
    logging.flush()
    print(f"genjax: error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  if result.signal is not None:
    sys.exit(128 + result.signal)


if __name__ == "__main__":
  app.run(main)
