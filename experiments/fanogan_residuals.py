r"""Why f-AnoGAN takes some 1s for normal (issue 17 §1): its score broken into its two residuals
and set against how much ink each digit has, for the f-AnoGAN runs of experiments/anomaly.py.

For each normal class k (run ``fanogan_<dataset>_c<k>_s0``) and each anomalous class j, the AUROC
of class j against the normal test examples under:
  * ``score``: the run's own izi_f score, A(x) = image residual + kappa x feature residual;
  * ``image`` and ``features``: each residual alone;
  * ``relative_image``: the image residual over the image's own energy, sum (x - G(E(x)))^2 /
    sum x^2 in [0, 1] units, which does not favour images with little ink.
Besides: each class's mean ink (mean pixel in [0, 1]) and, per run, Spearman's correlation of
the score with the ink over the normal test examples.

  python -m experiments.fanogan_residuals --root=RUNS [--dataset=mnist]
      # -> experiments/results/fanogan_residuals_<dataset>.json
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import numpy as np

from experiments import anomaly
from experiments import sweep
from genjax import data
from genjax import frozen
from genjax import runs
from genjax.metrics import anomaly as anomaly_metrics

BATCH = 500


def _ranks(x: np.ndarray) -> np.ndarray:
  return np.argsort(np.argsort(x)).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman's rank correlation (no ties expected: continuous values)."""
  return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def residuals(workdir: pathlib.Path, images: np.ndarray) -> dict[str, np.ndarray]:
  """Per-example ``image`` and ``features`` residuals, ``score`` and ``energy`` (sum of x^2 in
  [0, 1] units) of a f-AnoGAN run's newest checkpoint, on ``images`` (uint8)."""
  method, state, config = runs.restore_run(workdir)
  method.attach_frozen(frozen.for_config(config, method))

  @jax.jit
  def one_batch(state, images, weights):
    x = method.images(images)
    r = method.residuals(method.sampler_net(state), x, weights)
    lo, hi = method.value_range
    unit = (x.astype(np.float32) - lo) / (hi - lo)
    return {"image": r["image"], "features": r["features"], "score": method.score(r),
            "energy": (unit ** 2).reshape(len(x), -1).sum(-1),
            "sq_error": r["image"] * np.prod(x.shape[1:]) / (hi - lo) ** 2}
  out: dict[str, list[np.ndarray]] = {}
  for i in range(0, len(images), BATCH):
    for k, v in jax.device_get(one_batch(state, images[i:i + BATCH],
                                         method.frozen_weights)).items():
      out.setdefault(k, []).append(np.asarray(v))
  return {k: np.concatenate(v) for k, v in out.items()}


def analyse(root: pathlib.Path, dataset: str) -> dict:
  split = data.load(dataset, "test")
  images, labels = split["image"], np.asarray(split["label"])
  ink = images.reshape(len(images), -1).astype(np.float64).mean(-1) / 255
  # the committed summary is the record: a run that is not under ``root`` keeps its row
  recorded = {row["run"]: row for row in sweep.recorded("fanogan_residuals", dataset).get(
      "rows", ()) if not row.get("missing")}
  rows = []
  for k in anomaly.CLASSES:
    workdir = root / anomaly.run_name(f"fanogan_{dataset}", k, 0)
    if not (workdir / "checkpoints").exists():
      rows.append(recorded.get(workdir.name, {"normal": k, "run": workdir.name, "missing": True}))
      continue
    r = residuals(workdir, images)
    r["relative_image"] = r.pop("sq_error") / np.maximum(r.pop("energy"), 1e-6)
    normal = labels == k
    by_class = {}
    for j in sorted(set(labels.tolist()) - {k}):
      keep = normal | (labels == j)
      by_class[str(j)] = {name: round(100 * anomaly_metrics.auroc(r[name][keep],
                                                                  labels[keep] == j), 2)
                          for name in ("score", "image", "features", "relative_image")}
    rows.append({"normal": k, "run": workdir.name,
                 "auroc": {name: round(100 * anomaly_metrics.auroc(r[name], ~normal), 2)
                           for name in ("score", "image", "features", "relative_image")},
                 "spearman_score_ink_normal": round(spearman(r["score"][normal],
                                                             ink[normal]), 3),
                 "auroc_by_class": by_class})
  return {"experiment": "f-AnoGAN's score against ink", "dataset": dataset,
          "command": f"python -m experiments.fanogan_residuals --root=RUNS --dataset={dataset}",
          "metric": "AUROC (%) of the anomalous class(es) against the normal test examples",
          "mean_ink_by_class": {str(c): round(float(ink[labels == c].mean()), 4)
                                for c in anomaly.CLASSES},
          "rows": rows}


def main(argv) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", required=True, help="directory holding the anomaly sweep's runs")
  parser.add_argument("--dataset", default="mnist", choices=sweep.DATASETS)
  args = parser.parse_args(argv)
  if not pathlib.Path(args.root).is_dir():
    parser.error(f"--root {args.root} is not a directory: it holds the anomaly sweep's runs")
  path = sweep.RESULTS / f"fanogan_residuals_{args.dataset}.json"
  path.write_text(sweep.summary_text(analyse(pathlib.Path(args.root), args.dataset)))
  print(f"wrote {path}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
