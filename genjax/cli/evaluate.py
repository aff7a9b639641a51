r"""Evaluates a checkpoint: ``python -m genjax.cli.evaluate --workdir=DIR [--metrics=fid,kid]``.

The model, data and preprocessing come from the config saved with the checkpoint; the samples
are drawn with the EMA weights where the run kept them. Results go to stdout (one JSON line) and
are appended to ``<workdir>/metrics.jsonl`` (:func:`genjax.evaluation.evaluate_run`).
"""

from __future__ import annotations

from absl import app
from absl import flags

from genjax.errors import report_json

flags.DEFINE_string("workdir", None, "A training run's workdir (holding checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).")
flags.DEFINE_string("metrics", None, "Comma-separated: fid, kid, is, modes, pr, dc, auroc, nll "
                    "(default: the run's config.eval.metrics).")
flags.DEFINE_integer("num_samples", None, "Generated samples (default: config.eval.num_samples).")
flags.DEFINE_string("extractor", None, "classifier or inception (default: the run's).")
flags.DEFINE_string("weights", None, "Classifier workdir or Inception .pth/.npz.")
flags.DEFINE_string("split", None, "Real split to compare with (default: the run's eval split).")
flags.DEFINE_bool("allow_rank_deficient", None, "Compute FID with fewer samples than dimensions.")
flags.DEFINE_integer("nll_samples", None, "Importance samples per example of the nll metric "
                     "(default: config.eval.nll_samples).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS

_OVERRIDES = ("metrics", "num_samples", "extractor", "weights", "split", "allow_rank_deficient",
              "nll_samples")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  report_json(evaluation.evaluate_run, FLAGS.workdir, FLAGS.step,
              **{k: getattr(FLAGS, k) for k in _OVERRIDES})


if __name__ == "__main__":
  app.run(main)
