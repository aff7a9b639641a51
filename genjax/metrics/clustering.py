"""Unsupervised classification accuracy: clusters matched one-to-one to labels."""

from __future__ import annotations

import numpy as np


def cluster_accuracy(clusters: np.ndarray, labels: np.ndarray) -> tuple[float, dict[int, int]]:
  """Accuracy of ``clusters`` under the best one-to-one mapping of cluster ids to labels.

  The mapping maximises the number of examples whose cluster maps to their label (the Hungarian
  algorithm, ``scipy.optimize.linear_sum_assignment``, on the contingency table); clusters left
  without a label when there are more clusters than labels count as errors.

  Returns:
    (accuracy in [0, 1], {cluster: label}).
  """
  clusters, labels = np.asarray(clusters).ravel(), np.asarray(labels).ravel()
  if clusters.shape != labels.shape or clusters.size == 0:
    raise ValueError(f"clusters and labels must be non-empty and of one length, got "
                     f"{clusters.shape} and {labels.shape}")
  c_ids, c_idx = np.unique(clusters, return_inverse=True)
  l_ids, l_idx = np.unique(labels, return_inverse=True)
  table = np.zeros((len(c_ids), len(l_ids)), np.int64)
  np.add.at(table, (c_idx, l_idx), 1)
  # imported here: scipy.optimize takes a second to import, which every training process paid
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  rows, cols = optimize.linear_sum_assignment(table, maximize=True)
  mapping = {int(c_ids[r]): int(l_ids[c]) for r, c in zip(rows, cols)}
  return float(table[rows, cols].sum() / clusters.size), mapping
