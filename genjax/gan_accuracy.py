r"""Test accuracy of a GAN's discriminator as a classifier: ``python -m genjax.gan_accuracy
--workdir=DIR [--split=test] [--step=N]``.

SGAN: the discriminator's K real classes against the labels. InfoGAN: the Q head's categorical
code, mapped one-to-one to the labels by the Hungarian algorithm. The run's saved config gives
the model and data. Prints one JSON line and appends it to ``<workdir>/metrics.jsonl``.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags

from genjax.errors import GenjaxError
from genjax.errors import report_json

flags.DEFINE_string("workdir", None, "A training run's workdir (holding checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_string("split", "test", "The labelled split to classify.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def gan_accuracy(workdir: str, step: int | None = None, split: str = "test") -> dict:
  from genjax import data, runs  # pylint: disable=g-import-not-at-top,g-multiple-import
  from genjax.methods import adversarial  # pylint: disable=g-import-not-at-top
  method, state, config = runs.restore_run(workdir, step)
  if not isinstance(method, adversarial.Adversarial):
    raise GenjaxError(f"{workdir} holds a {config.model.name!r} run, not a GAN")
  ds = config.dataset
  arrays = data.load_config(ds, split)
  result = adversarial.class_accuracy(method, state, arrays["image"], arrays["label"])
  result = {"step": int(state.step), "split": split, "model": config.model.name, **result}
  if "mapping" in result:
    result["mapping"] = {str(k): v for k, v in result["mapping"].items()}
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"source": "gan_accuracy", **result}) + "\n")
  return result


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  report_json(gan_accuracy, FLAGS.workdir, FLAGS.step, FLAGS.split)


if __name__ == "__main__":
  app.run(main)
