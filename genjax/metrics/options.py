"""The ``config.eval`` section: which sample-quality metrics, on which features, how often.

Its schema (defaults and start-up checks) lives apart from :mod:`genjax.evaluation`, which
computes the metrics, so that the config schema does not depend on the evaluator.
"""

from __future__ import annotations

from typing import Any

from genjax import errors
from genjax.errors import ConfigError

EXTRACTORS = ("classifier", "inception")
# the metrics of generated samples, on an extractor's features (modes: the spread of the
# samples over the extractor's classes against the real split's, statistics.class_balance)
SAMPLE_METRICS = ("fid", "kid", "is", "modes", "pr", "dc")
# auroc: anomaly detection, the method's anomaly scores of the whole eval split ranked with
# config.dataset.classes as the normal classes; nll: the eval split's -log p(x) estimated by
# importance sampling (VAEs); neither needs a feature extractor
METRICS = (*SAMPLE_METRICS, "auroc", "nll")


def defaults() -> dict[str, Any]:
  """The ``config.eval`` section."""
  return dict(
      every=0,  # evaluate every N steps and at the end (0 = only with genjax.cli.evaluate)
      on_stop=False,  # evaluate also when a stop signal ends the run (after it has saved)
      # any of fid, kid, is (Inception/classifier score), modes, pr, dc, auroc, nll
      metrics="fid,kid",
      nll_samples=5000,  # importance samples per example of the nll metric (IWAE bound)
      num_samples=2048,  # generated samples per evaluation
      num_real=10000,  # real examples (at most the split's size)
      split="test",
      extractor="classifier",  # 'classifier' (MNIST-like data) or 'inception'
      # classifier run or Inception .pth/.npz; '' = the classifier run of the dataset in
      # $GENJAX_CLASSIFIER_DIR, default the checkout's experiments/classifiers (genjax.paths)
      weights="",
      batch_size=256,  # extraction/generation batch, rounded up to the device count
      allow_rank_deficient=False,  # FID with fewer samples than feature dimensions
      cache_dir="~/.cache/genjax/stats",
  )


def parse_metrics(spec: str) -> list[str]:
  names = [m.strip() for m in spec.split(",") if m.strip()]
  for name in names:
    errors.check_choice("config.eval.metrics entry", name, METRICS, ConfigError)
  return names


def validate(config) -> None:
  ec = config.eval
  if ec.every and not parse_metrics(ec.metrics):
    raise ConfigError(f"config.eval.every={ec.every} evaluates, and config.eval.metrics names "
                      f"no metric: name some of {', '.join(METRICS)}, or set eval.every=0")
  if "auroc" in parse_metrics(ec.metrics) and not config.dataset.classes:
    raise ConfigError("config.eval.metrics=auroc ranks the other classes against the normal "
                      "ones: name them with --config.dataset.classes, e.g. '(3,)'")
  errors.check_config_choice("eval.extractor", ec.extractor, EXTRACTORS)
  for key in ("every", "num_samples", "num_real", "batch_size", "nll_samples"):
    if ec[key] < (0 if key == "every" else 2):
      raise ConfigError(f"config.eval.{key} must be >= {0 if key == 'every' else 2}, got "
                        f"{ec[key]}")
