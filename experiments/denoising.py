r"""Denoising (issue 17 §5): the DAE's PSNR and SSIM against the noise level, for Gaussian and
salt-and-pepper noise, beside scikit-image's classical denoisers on the same noisy images.

One DAE per (dataset, noise kind, level), each the committed ``dae_<dataset>`` config trained at
that corruption (the classical per-level protocol of Vincent et al.). The classical peers get the
same advantage: each one's parameter (non-local means' filter strength and wavelet shrinkage as
multiples of ``skimage.restoration.estimate_sigma``'s estimate, the TV weight, the median
filter's size) is chosen per (kind, level) on 200 training images, then scored on the first
1000 test images, the images the DAE is scored on. PSNR and SSIM (Gaussian window, as
scikit-image's) are per image on the 28x28 digit, the padding to 32 cropped off, and averaged.

  python -m experiments.denoising train --root=RUNS       # trains the missing runs, resumes the rest
  python -m experiments.denoising evaluate --root=RUNS    # -> experiments/results/denoising_<dataset>.json

Both steps can be stopped and rerun: training resumes each run from its newest checkpoint
(experiments/sweep.py), and a finished run only restores its last checkpoint.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from experiments import sweep

HERE = pathlib.Path(__file__).resolve().parent
LEVELS = {"gaussian": (0.1, 0.2, 0.3, 0.5), "salt_pepper": (0.05, 0.1, 0.2, 0.4)}
NUM_IMAGES = 1000  # test images scored per (kind, level): the first of the test split
NUM_TUNING = 200  # training images on which each classical peer's parameter is chosen
GRID_LEVELS = {"gaussian": 0.3, "salt_pepper": 0.2}  # the levels the sample grid shows
CROP = slice(2, 30)  # the 28x28 digit inside the 32x32 padded image


def runs(dataset: str) -> list[tuple[str, float, str]]:
  """(kind, level, run name) of every DAE of ``dataset``."""
  return [(kind, level, f"dae_{dataset}_{kind}_{level:g}") for kind, levels in LEVELS.items()
          for level in levels]


def overrides(kind: str, level: float | str) -> tuple[str, ...]:
  level = level if isinstance(level, str) else f"{level:g}"
  return (f"--config.method.corruption={kind}", f"--config.method.corruption_level={level}")


def train(root: pathlib.Path, dataset: str) -> None:
  for kind, level, name in runs(dataset):
    sweep.train(root, name, f"dae_{dataset}", overrides(kind, level))


def _peers():
  """name -> (denoise(image, param, sigma_estimate), parameter grid)."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  from skimage import restoration  # pylint: disable=g-import-not-at-top
  return {
      "non-local means": (lambda x, p, s: restoration.denoise_nl_means(
          x, h=p * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6),
                          (0.2, 0.4, 0.7, 1.0, 1.3, 1.6, 2.0)),
      "wavelet (BayesShrink)": (lambda x, p, s: restoration.denoise_wavelet(
          x, sigma=p * s, method="BayesShrink", mode="soft", rescale_sigma=True),
                                (0.5, 1.0, 1.5, 2.0, 3.0)),
      "TV (Chambolle)": (lambda x, p, s: restoration.denoise_tv_chambolle(x, weight=p),
                         (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)),
      "median": (lambda x, p, s: ndimage.median_filter(x, size=p), (3, 5, 7)),
  }


def _scores(clean: np.ndarray, images: np.ndarray) -> dict[str, float]:
  """Mean per-image PSNR (dB) and SSIM of NHWC [0, 1] ``images`` against ``clean``, on the
  28x28 crop."""
  from genjax.metrics import image  # pylint: disable=g-import-not-at-top
  a, b = clean[:, CROP, CROP], images[:, CROP, CROP]
  return {"psnr": float(np.mean(image.psnr(a, b, 1.0))),
          "ssim": float(np.mean(image.ssim(a, b, 1.0)))}


def _denoise_all(denoise, noisy: np.ndarray, param) -> np.ndarray:
  from skimage import restoration  # pylint: disable=g-import-not-at-top
  out = np.empty_like(noisy)
  for i, x in enumerate(noisy[..., 0].astype(np.float64)):
    out[i, ..., 0] = denoise(x, param, restoration.estimate_sigma(x))
  return out


def _noisy(clean: np.ndarray, kind: str, level: float, seed: int) -> np.ndarray:
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import data  # pylint: disable=g-import-not-at-top
  return np.asarray(data.corrupt(clean, jax.random.PRNGKey(seed), kind=kind, level=level,
                                 value_range=(0.0, 1.0)))


def _images(dataset: str, split: str, n: int) -> np.ndarray:
  """The first ``n`` images of ``split`` as the DAE sees them: [0, 1], padded to 32x32."""
  from experiments.configs import dae_mnist  # pylint: disable=g-import-not-at-top
  from genjax import data  # pylint: disable=g-import-not-at-top
  c = dae_mnist.get_config()
  c.dataset.name = dataset
  images = data.load_config(c.dataset, split)["image"][:n]
  return np.asarray(data.to_float(images, value_range=(0.0, 1.0),
                                  image_size=c.dataset.image_size))


def _dae(workdir: pathlib.Path, noisy: np.ndarray, batch: int = 500) -> tuple[np.ndarray, int]:
  import jax  # pylint: disable=g-import-not-at-top
  from genjax import runs  # pylint: disable=g-import-not-at-top
  method, state, _ = runs.restore_run(workdir)
  reconstruct = jax.jit(method.reconstruct)
  out = np.concatenate([np.asarray(reconstruct(state, noisy[i:i + batch]))
                        for i in range(0, len(noisy), batch)])
  return out, int(state.step)


def evaluate_dataset(root: pathlib.Path, dataset: str, png: pathlib.Path, *,
                     num_images: int = NUM_IMAGES, num_tuning: int = NUM_TUNING) -> dict:
  """The summary of ``dataset``'s denoising table; writes its sample grid to ``png``."""
  from genjax import reporting  # pylint: disable=g-import-not-at-top
  missing = [name for *_, name in runs(dataset) if not (root / name / "checkpoints").is_dir()]
  if missing:  # every row, and the grid, needs its run: nothing is written without them all
    raise SystemExit(f"no {', '.join(missing)} under {root}: train them first with python -m "
                     f"experiments.denoising train --root={root} --datasets={dataset}")
  clean = _images(dataset, "test", num_images)
  tuning = _images(dataset, "train", num_tuning)
  peers = _peers()
  rows, grid = [], []
  for index, (kind, level, name) in enumerate(runs(dataset)):
    noisy = _noisy(clean, kind, level, seed=index)
    tuning_noisy = _noisy(tuning, kind, level, seed=1000 + index)
    dae, step = _dae(root / name, noisy)
    methods = {"noisy input": _scores(clean, noisy), "DAE": _scores(clean, dae)}
    shown = [clean[:8], noisy[:8], dae[:8]]
    for peer, (denoise, grid_values) in peers.items():
      best = max(grid_values, key=lambda p, d=denoise: _scores(
          tuning, _denoise_all(d, tuning_noisy, p))["psnr"])
      out = _denoise_all(denoise, noisy, best)
      methods[peer] = {**_scores(clean, out), "param": best}
      shown.append(out[:8])
    rows.append({"kind": kind, "level": level, "run": name, "step": step, "methods": methods})
    print(json.dumps(rows[-1]), flush=True)
    if level == GRID_LEVELS[kind]:
      grid.append(np.stack(shown))
  reporting.save_png(reporting.grid_to_uint8(np.concatenate(grid).transpose(1, 0, 2, 3, 4)
                                             [:, :, CROP, CROP], (0.0, 1.0)), str(png))
  return {
      "dataset": dataset, "num_images": num_images, "num_tuning": num_tuning,
      "grid": f"samples/{png.name}: columns per (kind, level) shown: clean, noisy, DAE, "
              f"{', '.join(peers)}; one row per test image",
      "commands": ["python -m experiments.denoising train --root=RUNS",
                   "python -m experiments.denoising evaluate --root=RUNS"],
      "train_command": sweep.command(f"dae_{dataset}", "RUNS/<run>",
                                     overrides("<kind>", "<level>")),
      "rows": rows,
  }


def main(argv=None) -> int:
  return sweep.main(argv, doc=__doc__, experiment="denoising", train_dataset=train,
                    evaluate_dataset=lambda root, dataset: evaluate_dataset(
                        root, dataset, HERE / "samples" / f"denoising_{dataset}.png"))


if __name__ == "__main__":
  sys.exit(main())
