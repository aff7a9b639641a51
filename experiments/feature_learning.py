r"""Feature learning (issue 17 §4): linear-probe test accuracy on frozen features.

Representations, per dataset (MNIST, Fashion-MNIST):
  * raw pixels (the baseline);
  * the codes of the AE, the DAE (Gaussian noise, std 0.3) and the VAE (posterior mean), each the
    committed config;
  * the discriminators' last 4x4 feature maps, flattened, of DCGAN and SNGAN (committed configs,
    SNGAN at its former width 32; BatchNorm in inference mode).
The probe is multinomial logistic regression (:func:`genjax.metrics.probe.fit_logistic`,
scikit-learn's objective, full-batch L-BFGS) on standardised features,
trained on the first 50000 training images; its L2 strength ``C`` is chosen on the last 10000
(the validation split), and the chosen probe is scored once on the 10000 test images.

  python -m experiments.feature_learning train --root=RUNS     # trains (or resumes) the runs
  python -m experiments.feature_learning evaluate --root=RUNS  # -> experiments/results/feature_learning_<dataset>.json

``RUNS`` may be the root experiments/denoising.py trained into: the DAE is its Gaussian 0.3 run.
A row the committed summary records is kept where its run is not under ``RUNS`` (and ``train``
does not retrain it), so the rows still missing can be added on another machine.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from experiments import sweep

NUM_TRAIN = 50000  # the probe's training images; the rest of the training split validates C
C_GRID = (0.01, 0.1, 1.0)


def representations(dataset: str) -> list[tuple[str, str | None, str, tuple[str, ...]]]:
  """(label, run name or None for pixels, config, overrides) of ``dataset``'s rows."""
  dae = ("--config.method.corruption=gaussian", "--config.method.corruption_level=0.3")
  # the GAN rows were measured at 3000 steps, the SNGAN rows also at width 32 (sweep.ZOO_*)
  return [("raw pixels", None, "", ()),
          ("AE code", f"ae_{dataset}", f"ae_{dataset}", ()),
          ("DAE code (Gaussian 0.3)", f"dae_{dataset}_gaussian_0.3", f"dae_{dataset}", dae),
          ("VAE posterior mean", f"vae_{dataset}", f"vae_{dataset}", ()),
          ("DCGAN discriminator", f"dcgan_{dataset}", f"dcgan_{dataset}", sweep.ZOO_3000_STEPS),
          ("SNGAN discriminator", f"sngan_{dataset}", f"sngan_{dataset}",
           sweep.ZOO_WIDTH_32 + sweep.ZOO_3000_STEPS)]


def _command(run: str, config: str, overrides: tuple[str, ...]) -> str:
  return sweep.command(config, "RUNS/" + run, overrides)


def train(root: pathlib.Path, dataset: str) -> None:
  """Trains the runs that are not recorded yet (and resumes those under ``root``)."""
  done = sweep.recorded_by_command("feature_learning", dataset, "test_accuracy")
  for _, run, config, overrides in representations(dataset):
    if run is not None and (_command(run, config, overrides) not in done or
                            (root / run).exists()):
      sweep.train(root, run, config, overrides)


def _split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  from genjax import data  # pylint: disable=g-import-not-at-top
  examples = data.load(dataset, split)
  return np.asarray(examples["image"]), np.asarray(examples["label"])


def _features(workdir: pathlib.Path | None, images: np.ndarray,
              batch: int = 1000) -> tuple[np.ndarray, int | None]:
  """``[N, F]`` features of uint8 ``images`` from the run in ``workdir`` (None: the pixels in
  [0, 1]), and the run's step."""
  if workdir is None:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0, None
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import runs  # pylint: disable=g-import-not-at-top
  method, state, _ = runs.restore_run(workdir)
  features = jax.jit(method.features)
  return np.concatenate([np.asarray(features(state, images[i:i + batch]))
                         for i in range(0, len(images), batch)]), int(state.step)


def probe(train_x, train_y, val_x, val_y, test_x, test_y, c_grid=C_GRID) -> dict:
  """The linear probe: standardise on the training features, fit one logistic regression per
  ``C`` (each warm-started from the previous), keep the best on validation, score it on test."""
  from genjax.metrics import probe as probe_lib  # pylint: disable=g-import-not-at-top
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  train_x, val_x, test_x = ((x - mean) / std for x in (train_x, val_x, test_x))
  fits, fit = {}, None
  for c in sorted(c_grid):
    fit = probe_lib.fit_logistic(train_x, train_y, num_classes=10, C=c, init=fit)
    fits[c] = (fit.accuracy(val_x, val_y), fit)
  best = max(fits, key=lambda c: fits[c][0])
  return {"test_accuracy": fits[best][1].accuracy(test_x, test_y), "C": best,
          "iterations": int(fits[best][1].iterations),
          "validation_accuracy": {str(c): acc for c, (acc, _) in fits.items()}}


def evaluate_dataset(root: pathlib.Path, dataset: str) -> dict:
  train_images, train_labels = _split(dataset, "train")
  test_images, test_labels = _split(dataset, "test")
  rows, before = [], sweep.recorded_by_command("feature_learning", dataset, "test_accuracy")
  for label, run, config, overrides in representations(dataset):
    workdir = None if run is None else root / run
    command = _command(run, config, overrides) if run else None
    if workdir is not None and not (workdir / "checkpoints").is_dir():
      if command in before:
        print(f"{label}: {workdir} is not here; its recorded row is kept", flush=True)
        rows.append(before[command])
      else:
        print(f"{label}: {workdir} is not trained yet; its row says so", flush=True)
        rows.append({"representation": label, "run": run, "missing": True, "command": command})
      continue
    feats, step = _features(workdir, train_images)
    test_feats, _ = _features(workdir, test_images)
    result = probe(feats[:NUM_TRAIN], train_labels[:NUM_TRAIN], feats[NUM_TRAIN:],
                   train_labels[NUM_TRAIN:], test_feats, test_labels)
    rows.append({"representation": label, "run": run, "step": step, "dim": int(feats.shape[1]),
                 **result, "command": command})
    print(json.dumps(rows[-1]), flush=True)
  return {"dataset": dataset, "num_train": NUM_TRAIN,
          "num_validation": int(len(train_labels) - NUM_TRAIN),
          "num_test": int(len(test_labels)), "C_grid": list(C_GRID),
          "commands": ["python -m experiments.feature_learning train --root=RUNS",
                       "python -m experiments.feature_learning evaluate --root=RUNS"],
          "rows": rows}


def main(argv=None) -> int:
  return sweep.main(argv, doc=__doc__, experiment="feature_learning", train_dataset=train,
                    evaluate_dataset=evaluate_dataset)


if __name__ == "__main__":
  sys.exit(main())
