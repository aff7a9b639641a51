r"""Anomaly detection (issue 17 §1): one class per run, the whole test split scored with that
class as normal; AUROC per class and its mean over the ten classes.

Methods, per normal class k of MNIST and Fashion-MNIST (committed configs, the reference's
protocol: experiments/configs/_one_class.py):
  * the LeNet autoencoder's reconstruction error (``lenet_ae_<dataset>``), which is also
    Deep SVDD's pre-training;
  * one-class Deep SVDD (``deep_svdd_<dataset>``) started from that autoencoder's encoder;
  * soft-boundary Deep SVDD (the same config, ``method.objective=soft-boundary``, nu = 0.1);
  * f-AnoGAN (``fanogan_<dataset>``): an encoder into the latent space of a WGAN-GP trained on
    the class first (``wgan_gp_<dataset>``), scored by the izi_f residuals.
Seeds: MNIST trains seeds 0, 1, 2 of the autoencoder and of one-class Deep SVDD (the paper
reports mean ± std over seeds), one seed of the others; Fashion-MNIST one seed of each. The
paper (Ruff et al., ICML 2018) has no Fashion-MNIST column.

Runs train seed by seed (every class of seed 0 first), each in ``RUNS/<run>``, a run's
prerequisite (the autoencoder of Deep SVDD, the GAN of f-AnoGAN) first; a stopped sweep picks
up where it stopped (experiments/sweep.py), and runs the committed summary records are skipped.
``evaluate`` reads each run's AUROC at its last step from its metrics.jsonl; runs not finished
yet are listed as missing.

  python -m experiments.anomaly train --root=RUNS [--datasets=mnist]
  python -m experiments.anomaly evaluate --root=RUNS  # -> experiments/results/anomaly_<dataset>.json
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import statistics
import sys

from experiments import sweep

CLASSES = tuple(range(10))

# Ruff et al. (ICML 2018), Table 1, MNIST, one-class Deep SVDD: AUROC in %, mean ± std over
# 10 seeds, per normal class 0-9 (also quoted as "DeepSVDD*" in later papers' tables).
PAPER_ONE_CLASS_MNIST = ((98.0, 0.7), (99.7, 0.1), (91.7, 0.8), (91.9, 1.5), (94.9, 0.8),
                         (88.5, 0.9), (98.3, 0.5), (94.6, 0.9), (93.9, 1.6), (96.5, 0.3))


@dataclasses.dataclass(frozen=True)
class Detector:
  """One anomaly detector of the sweep: its runs ``<prefix>_c<k>_s<seed>`` of ``config``."""
  label: str
  prefix: str
  config: str
  seeds: tuple[int, ...]
  needs: str = ""  # the config of a run of the same class and seed it starts from
  options: tuple[str, ...] = ()

  @property
  def steps(self) -> int:
    """The run's last step, where its AUROC is read: its config's ``num_steps``."""
    return importlib.import_module(f"experiments.configs.{self.config}").get_config().num_steps

  def prerequisite(self, dataset: str) -> str:
    """The run prefix of its prerequisite ("" if none)."""
    return self.needs and f"{self.needs}_{dataset}"


def methods(dataset: str) -> list[Detector]:
  """``dataset``'s detectors, in training order."""
  seeds = (0, 1, 2) if dataset == "mnist" else (0,)
  ae, svdd = f"lenet_ae_{dataset}", f"deep_svdd_{dataset}"
  return [Detector("autoencoder reconstruction error", ae, ae, seeds),
          Detector("Deep SVDD, one-class", svdd, svdd, seeds, needs="lenet_ae"),
          Detector("Deep SVDD, soft-boundary", f"deep_svdd_sb_{dataset}", svdd, (0,),
                   needs="lenet_ae", options=("--config.method.objective=soft-boundary",)),
          Detector("f-AnoGAN (izi_f, κ = 1)", f"fanogan_{dataset}", f"fanogan_{dataset}", (0,),
                   needs="wgan_gp")]


def run_name(prefix: str, k: int, seed: int) -> str:
  return f"{prefix}_c{k}_s{seed}"


def _class_and_seed(k, seed) -> tuple[str, ...]:
  return (f"--config.dataset.classes=({k},)", f"--config.seed={seed}")


# f-AnoGAN's WGAN-GP: the zoo config at the width (32) and length (5000 critic steps) every
# recorded run was trained at
WGAN_GP_PINNED = (*sweep.ZOO_WIDTH_32, "--config.num_steps=5000")


def prerequisite_overrides(detector: Detector, k, seed) -> tuple[str, ...]:
  """The flags of a detector's prerequisite run: the class and seed (and for a GAN its width and
  length, and no in-loop FID: the test split it would be measured against is not its one
  class)."""
  return _class_and_seed(k, seed) + (
      ("--config.eval.every=0", *WGAN_GP_PINNED) if detector.needs == "wgan_gp" else ())


def overrides(root: pathlib.Path, dataset: str, detector: Detector, k, seed) -> tuple[str, ...]:
  out = [*_class_and_seed(k, seed), *detector.options]
  source = root / run_name(detector.prerequisite(dataset), k, seed)
  if detector.needs == "lenet_ae":
    out.append(f"--config.init.from_run={source}")
  elif detector.needs == "wgan_gp":
    out += [f"--config.frozen.generator={source}",
            f"--config.frozen.discriminator={source}#discriminator"]
  return tuple(out)


def _recorded_cells(dataset: str) -> dict:
  """``{(method label, class): cell}`` of the committed summary (see sweep.recorded)."""
  rows = sweep.recorded("anomaly", dataset).get("rows", [])
  return {(r["method"], c["class"]): c for r in rows for c in r["classes"]}


def train(root: pathlib.Path, dataset: str) -> None:
  detectors, done = methods(dataset), _recorded_cells(dataset)
  for seed in sorted({s for d in detectors for s in d.seeds}):
    for k in CLASSES:
      trained = set()
      for d in detectors:
        run = run_name(d.prefix, k, seed)
        # skipped where the summary records it, unless its run is here to be finished
        if seed not in d.seeds or (seed in done.get((d.label, k), {}).get("seeds", ()) and
                                   not (root / run).exists()):
          continue
        before = d.prerequisite(dataset)
        if before and before not in trained:
          sweep.train(root, run_name(before, k, seed), before,
                      prerequisite_overrides(d, k, seed))
          trained.add(before)
        sweep.train(root, run, d.config, overrides(root, dataset, d, k, seed))
        trained.add(d.prefix)


def final_eval(workdir: pathlib.Path, steps: int) -> dict | None:
  """The run's (last) anomaly evaluation at its last step ``steps``, or None if it has not got
  there."""
  evals = [x for x in sweep.metric_lines(workdir) if "auroc" in x]
  return evals[-1] if evals and evals[-1]["step"] == steps else None


def _by_class(lines: dict, previous: dict | None) -> dict:
  """``{seed: {anomalous class: AUROC %}}`` of the runs' evaluations that hold the breakdown
  (``auroc_by_class``), else as ``previous`` recorded it."""
  out = dict((previous or {}).get("auroc_by_class", {}))
  for seed, line in lines.items():
    if line is not None and "auroc_by_class" in line:
      out[str(seed)] = {k: 100 * v for k, v in line["auroc_by_class"].items()}
  return dict(sorted(out.items()))


def evaluate(root: pathlib.Path, dataset: str) -> dict:
  rows, before = [], _recorded_cells(dataset)
  for d in methods(dataset):
    per_class, steps = [], d.steps
    for k in CLASSES:
      lines = {s: final_eval(root / run_name(d.prefix, k, s), steps) for s in d.seeds}
      values = sweep.per_seed({s: None if v is None else 100 * v["auroc"]
                               for s, v in lines.items()}, before.get((d.label, k)), "auroc")
      cell = {"class": k, "seeds": list(values), "auroc": list(values.values()),
              **sweep.mean_std(list(values.values()))}
      if by_class := _by_class(lines, before.get((d.label, k))):
        cell["auroc_by_class"] = by_class
      if dataset == "mnist" and d.prefix == "deep_svdd_mnist":
        cell["paper"] = dict(zip(("mean", "std"), PAPER_ONE_CLASS_MNIST[k]))
      per_class.append(cell)
    complete = all(len(c["auroc"]) == len(d.seeds) for c in per_class)
    runs = pathlib.Path("RUNS")
    commands = [sweep.command(d.config, str(runs / run_name(d.prefix, "K", "S")),
                              overrides(runs, dataset, d, "K", "S"))]
    if d.needs:
      before_run = d.prerequisite(dataset)
      commands.insert(0, sweep.command(before_run, str(runs / run_name(before_run, "K", "S")),
                                       prerequisite_overrides(d, "K", "S")))
    rows.append({"method": d.label, "config": d.config, "seeds": list(d.seeds),
                 "steps": steps, "commands": commands, "classes": per_class,
                 "complete": complete,
                 "mean_over_classes": (statistics.mean(c["mean"] for c in per_class)
                                       if complete else None)})
  return {"experiment": "anomaly detection, one class per run", "dataset": dataset,
          "metric": "AUROC (%) on the whole test split, the run's class as normal",
          "paper": ("Ruff et al., Deep One-Class Classification, ICML 2018, "
                    "Table 1 (MNIST, one-class Deep SVDD, 10 seeds)"),
          "sweep": "python -m experiments.anomaly train --root=RUNS", "rows": rows}


if __name__ == "__main__":
  sys.exit(sweep.main(sys.argv[1:], doc=__doc__, experiment="anomaly", train_dataset=train,
                      evaluate_dataset=evaluate))
