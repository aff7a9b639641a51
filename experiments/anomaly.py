r"""Anomaly detection (issue 17 §1): one class per run, the whole test split scored with that
class as normal; AUROC per class and its mean over the ten classes.

Methods, per normal class k of MNIST and Fashion-MNIST (committed configs, the reference's
protocol: experiments/configs/_one_class.py):
  * the LeNet autoencoder's reconstruction error (``lenet_ae_<dataset>``), which is also
    Deep SVDD's pre-training;
  * one-class Deep SVDD (``deep_svdd_<dataset>``) started from that autoencoder's encoder;
  * soft-boundary Deep SVDD (the same config, ``method.objective=soft-boundary``, nu = 0.1).
Seeds: MNIST trains seeds 0, 1, 2 of the autoencoder and of one-class Deep SVDD (the paper
reports mean ± std over seeds), one seed of soft-boundary; Fashion-MNIST one seed of each. The
paper (Ruff et al., ICML 2018) has no Fashion-MNIST column.

Runs train seed by seed (every class of seed 0 first), each in ``RUNS/<run>``; a stopped sweep
picks up where it stopped (experiments/sweep.py). ``evaluate`` reads each run's last AUROC from
its metrics.jsonl; runs not finished yet are listed as missing.

  python -m experiments.anomaly train --root=RUNS [--datasets=mnist]
  python -m experiments.anomaly evaluate --root=RUNS  # -> experiments/results/anomaly_<dataset>.json
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys

from experiments import sweep

CLASSES = tuple(range(10))
STEPS = 4500  # 150 epochs of one class (experiments/configs/_one_class.py)

# Ruff et al. (ICML 2018), Table 1, MNIST, one-class Deep SVDD: AUROC in %, mean ± std over
# 10 seeds, per normal class 0-9 (also quoted as "DeepSVDD*" in later papers' tables).
PAPER_ONE_CLASS_MNIST = ((98.0, 0.7), (99.7, 0.1), (91.7, 0.8), (91.9, 1.5), (94.9, 0.8),
                         (88.5, 0.9), (98.3, 0.5), (94.6, 0.9), (93.9, 1.6), (96.5, 0.3))


def methods(dataset: str) -> list[tuple[str, str, str, tuple[int, ...]]]:
  """(label, run prefix, config, seeds) of ``dataset``'s methods, in training order."""
  seeds = (0, 1, 2) if dataset == "mnist" else (0,)
  return [("autoencoder reconstruction error", f"lenet_ae_{dataset}", f"lenet_ae_{dataset}", seeds),
          ("Deep SVDD, one-class", f"deep_svdd_{dataset}", f"deep_svdd_{dataset}", seeds),
          ("Deep SVDD, soft-boundary", f"deep_svdd_sb_{dataset}", f"deep_svdd_{dataset}", (0,))]


def run_name(prefix: str, k: int, seed: int) -> str:
  return f"{prefix}_c{k}_s{seed}"


def overrides(root: pathlib.Path, dataset: str, prefix: str, k: int, seed: int) -> tuple[str, ...]:
  out = [f"--config.dataset.classes=({k},)", f"--config.seed={seed}"]
  if prefix.startswith("deep_svdd"):
    out.append(f"--config.init.from_run={root / run_name(f'lenet_ae_{dataset}', k, seed)}")
  if prefix.startswith("deep_svdd_sb"):
    out.append("--config.method.objective=soft-boundary")
  return tuple(out)


def _recorded_cells(dataset: str) -> dict:
  """``{(method label, class): cell}`` of the committed summary (see sweep.recorded)."""
  rows = sweep.recorded("anomaly", dataset).get("rows", [])
  return {(r["method"], c["class"]): c for r in rows for c in r["classes"]}


def train(root: pathlib.Path, dataset: str) -> None:
  todo, done = methods(dataset), _recorded_cells(dataset)
  for seed in sorted({s for *_, seeds in todo for s in seeds}):
    for k in CLASSES:
      group = [(label, prefix, config) for label, prefix, config, seeds in todo if seed in seeds]
      # A class and seed the summary records for every method is skipped unless its runs are
      # here (Deep SVDD starts from the autoencoder's run, so they train together).
      if (all(seed in done.get((label, k), {}).get("seeds", ()) for label, *_ in group) and
          not any((root / run_name(prefix, k, seed)).exists() for _, prefix, _ in group)):
        continue
      for _, prefix, config in group:
        sweep.train(root, run_name(prefix, k, seed), config,
                    overrides(root, dataset, prefix, k, seed))


def final_auroc(workdir: pathlib.Path) -> float | None:
  """The AUROC of the run's evaluation at its last step, or None if it has not got there."""
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return None
  evals = [json.loads(x) for x in path.read_text().splitlines() if '"auroc"' in x]
  return evals[-1]["auroc"] if evals and evals[-1]["step"] == STEPS else None


def evaluate(root: pathlib.Path, dataset: str) -> dict:
  rows, before = [], _recorded_cells(dataset)
  for label, prefix, config, seeds in methods(dataset):
    per_class = []
    for k in CLASSES:
      found = {s: final_auroc(root / run_name(prefix, k, s)) for s in seeds}
      values = sweep.per_seed({s: None if v is None else 100 * v for s, v in found.items()},
                              before.get((label, k)), "auroc")
      cell = {"class": k, "seeds": list(values), "auroc": list(values.values()),
              **sweep.mean_std(list(values.values()))}
      if dataset == "mnist" and prefix == "deep_svdd_mnist":
        cell["paper"] = dict(zip(("mean", "std"), PAPER_ONE_CLASS_MNIST[k]))
      per_class.append(cell)
    complete = all(len(c["auroc"]) == len(seeds) for c in per_class)
    rows.append({"method": label, "config": config, "seeds": list(seeds),
                 "command": sweep.command(config, f"RUNS/{run_name(prefix, 'K', 'S')}",
                                          overrides(pathlib.Path("RUNS"), dataset, prefix,
                                                    "K", "S")),
                 "classes": per_class, "complete": complete,
                 "mean_over_classes": (statistics.mean(c["mean"] for c in per_class)
                                       if complete else None)})
  return {"experiment": "anomaly detection, one class per run", "dataset": dataset,
          "metric": "AUROC (%) on the whole test split, the run's class as normal",
          "steps": STEPS, "paper": ("Ruff et al., Deep One-Class Classification, ICML 2018, "
                                    "Table 1 (MNIST, one-class Deep SVDD, 10 seeds)"),
          "sweep": "python -m experiments.anomaly train --root=RUNS", "rows": rows}


if __name__ == "__main__":
  sys.exit(sweep.main(sys.argv[1:], doc=__doc__, experiment="anomaly", train_dataset=train,
                      evaluate_dataset=evaluate))
