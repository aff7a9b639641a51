r"""Data augmentation (issue 17 §3): a classifier trained on N labelled examples, alone, with
classical augmentation, or with extra class-conditional samples from an AC-GAN.

Per dataset (MNIST, Fashion-MNIST) and N in {100, 1000} (``dataset.per_class`` = N / 10, one
fixed subset, ``dataset.subset_seed=0``): the committed ``classifier_<dataset>`` network, trained
for STEPS steps of BATCH examples in three settings, seeds 0, 1, 2 each (the seed changes the
initialisation and the batch order, not the subset):
  * alone: no augmentation (``method.translate=0``);
  * classical: random translations of up to 2 pixels (the classifier's own augmentation);
  * generated: half of every batch drawn by a frozen AC-GAN (``method.generated_fraction=0.5``)
    trained on the same N labelled examples only, so the generated images carry no label the
    classifier was not given (an AC-GAN trained on the whole labelled split would leak the
    other labels into the comparison).
The test accuracy on the whole test split is each run's score; the summary has mean ± std.

  python -m experiments.augmentation train --root=RUNS [--datasets=mnist]
  python -m experiments.augmentation evaluate --root=RUNS  # -> experiments/results/augmentation_<dataset>.json
"""

from __future__ import annotations

import pathlib
import sys

from experiments import sweep

SIZES = (100, 1000)
SEEDS = (0, 1, 2)
STEPS, BATCH = 1000, 64
SETTINGS = {"alone": ("--config.method.translate=0",),
            "classical": ("--config.method.translate=2",),
            "generated": ("--config.method.translate=0", "--config.method.generated_fraction=0.5")}
LABELS = {"alone": "no augmentation", "classical": "random translations (±2 px)",
          "generated": "+ AC-GAN samples (half of each batch)"}


def subset(n: int) -> tuple[str, ...]:
  return (f"--config.dataset.per_class={n // 10}", "--config.dataset.subset_seed=0")


def generator_overrides(n: int) -> tuple[str, ...]:
  """The generators' AC-GAN config at the 3000 steps they were recorded at."""
  return subset(n) + sweep.ZOO_3000_STEPS


def generator_run(dataset: str, n: int) -> str:
  return f"acgan_{dataset}_n{n}"


def classifier_run(dataset: str, n: int, setting: str, seed: int) -> str:
  return f"classifier_{dataset}_n{n}_{setting}_s{seed}"


def classifier_overrides(root: pathlib.Path, dataset: str, n: int, setting: str,
                         seed: int) -> tuple[str, ...]:
  out = [*subset(n), f"--config.seed={seed}", f"--config.num_steps={STEPS}",
         f"--config.batch_size={BATCH}", *SETTINGS[setting]]
  if setting == "generated":
    out.append(f"--config.frozen.generator={root / generator_run(dataset, n)}")
  return tuple(out)


def _recorded_rows(dataset: str) -> dict:
  """``{(n, setting): row}`` of the committed summary (see sweep.recorded)."""
  rows = sweep.recorded("augmentation", dataset).get("rows", [])
  return {(r["n"], r["setting"]): r for r in rows}


def train(root: pathlib.Path, dataset: str) -> None:
  done = _recorded_rows(dataset)
  todo = [(seed, n, setting) for seed in SEEDS for n in SIZES for setting in SETTINGS
          if seed not in done.get((n, setting), {}).get("seeds", ())
          or (root / classifier_run(dataset, n, setting, seed)).exists()]
  for n in SIZES:  # the generators that a classifier still to train samples
    if any(t[1:] == (n, "generated") for t in todo):
      sweep.train(root, generator_run(dataset, n), f"acgan_{dataset}", generator_overrides(n))
  for seed, n, setting in todo:
    sweep.train(root, classifier_run(dataset, n, setting, seed), f"classifier_{dataset}",
                classifier_overrides(root, dataset, n, setting, seed))


def test_accuracy(workdir: pathlib.Path) -> float | None:
  """The run's test accuracy, None if it has not finished its STEPS (or not saved yet)."""
  from genjax import data  # pylint: disable=g-import-not-at-top
  from genjax import runs  # pylint: disable=g-import-not-at-top
  from genjax.errors import CheckpointError  # pylint: disable=g-import-not-at-top
  from genjax.methods import classification  # pylint: disable=g-import-not-at-top
  try:
    method, state, config = runs.restore_run(workdir)
  except CheckpointError:  # not started, or no checkpoint yet
    return None
  if int(state.step) != STEPS:
    return None
  test = data.load_config(config.dataset, "test")
  return classification.accuracy(method, state, test["image"], test["label"])


def evaluate(root: pathlib.Path, dataset: str) -> dict:
  rows, before = [], _recorded_rows(dataset)
  for n in SIZES:
    for setting in SETTINGS:
      found = {s: test_accuracy(root / classifier_run(dataset, n, setting, s)) for s in SEEDS}
      values = sweep.per_seed({s: None if v is None else 100 * v for s, v in found.items()},
                              before.get((n, setting)), "accuracy")
      rows.append({"n": n, "setting": setting, "label": LABELS[setting],
                   "seeds": list(values), "accuracy": list(values.values()),
                   **sweep.mean_std(list(values.values())),
                   "command": sweep.command(
                       f"classifier_{dataset}", f"RUNS/{classifier_run(dataset, n, setting, 'S')}",
                       classifier_overrides(pathlib.Path("RUNS"), dataset, n, setting, "S"))})
  return {"experiment": "data augmentation", "dataset": dataset,
          "metric": "test accuracy (%) on the whole test split",
          "generator": {n: sweep.command(f"acgan_{dataset}", f"RUNS/{generator_run(dataset, n)}",
                                         generator_overrides(n)) for n in SIZES},
          "steps": STEPS, "batch_size": BATCH, "num_seeds": len(SEEDS),
          "sweep": "python -m experiments.augmentation train --root=RUNS", "rows": rows}


if __name__ == "__main__":
  sys.exit(sweep.main(sys.argv[1:], doc=__doc__, experiment="augmentation", train_dataset=train,
                      evaluate_dataset=evaluate))
