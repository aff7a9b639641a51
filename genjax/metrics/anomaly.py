"""Ranking metrics for anomaly detection (host numpy, float64).

``labels`` are 1 for anomalies and 0 for normal samples; a higher score means more anomalous.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genjax.errors import ConfigError

ArrayLike = Any  # numpy or jax array


def _scores_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  scores = np.asarray(scores, np.float64).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  if scores.shape != labels.shape:
    raise ConfigError(f"scores and labels differ in length: {scores.size} against {labels.size}")
  if not np.isin(labels, (0, 1)).all():
    raise ConfigError("labels must be 0 (normal) or 1 (anomaly)")
  if not np.isfinite(scores).all():
    raise ConfigError("anomaly scores must be finite")
  labels = labels.astype(bool)
  if labels.all() or not labels.any():
    raise ConfigError(f"ranking metrics need both normal and anomalous samples, got "
                      f"{int(labels.sum())} anomalies out of {labels.size}")
  return scores, labels


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
  """Area under the ROC curve: P(score of an anomaly > score of a normal), ties counting 1/2.

  Computed as the Mann-Whitney U statistic from average ranks.
  """
  scores, labels = _scores_labels(scores, labels)
  # 1-based ranks, ties getting their average rank (scipy.stats.rankdata's default, without
  # the second of importing scipy.stats in every process)
  _, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ranks = (np.cumsum(counts) - (counts - 1) / 2)[group]
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
  return float(u / (n_pos * n_neg))


def auprc(scores: ArrayLike, labels: ArrayLike) -> float:
  """Average precision, ``sum_n (R_n - R_{n-1}) P_n``, as scikit-learn's
  ``average_precision_score``.

  Thresholds are the distinct scores in decreasing order (tied samples enter together); ``P_n``
  and ``R_n`` are the precision and recall of flagging everything scored at least threshold n.
  """
  scores, labels = _scores_labels(scores, labels)
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], labels[order]
  last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each group of equal scores
  tp = np.cumsum(y)[last]
  precision = tp / (last + 1)
  recall = tp / tp[-1]
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))
