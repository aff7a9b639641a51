r"""Test accuracy of a GAN's discriminator as a classifier: ``python -m genjax.cli.gan_accuracy
--workdir=DIR [--split=test] [--step=N]``.

SGAN's K real classes, or InfoGAN's categorical code mapped to the labels
(:func:`genjax.evaluation.gan_accuracy`), with the model and data of the run's saved config.
Prints one JSON line and appends it to ``<workdir>/metrics.jsonl``.
"""

from __future__ import annotations

from absl import app
from absl import flags

from genjax.errors import report_json

flags.DEFINE_string("workdir", None, "A training run's workdir (holding checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_string("split", "test", "The labelled split to classify.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  report_json(evaluation.gan_accuracy, FLAGS.workdir, FLAGS.step, FLAGS.split)


if __name__ == "__main__":
  app.run(main)
