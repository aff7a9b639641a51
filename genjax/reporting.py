"""Run outputs: the console line, TensorBoard event files and PNG sample grids.

Only process 0 writes files; every process prints (``genjax.cli.train`` tags each line with the
process index when there is more than one).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import logging
from PIL import Image


def grid_to_uint8(grid: np.ndarray, value_range: tuple[float, float], pad: int = 2) -> np.ndarray:
  """``[rows, cols, H, W, C]`` floats in ``value_range`` -> one ``uint8 [H', W', C]`` image."""
  lo, hi = value_range
  rows, cols, h, w, c = grid.shape
  x = np.clip((np.asarray(grid, np.float32) - lo) / (hi - lo), 0.0, 1.0)
  x = np.round(x * 255).astype(np.uint8)
  out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(rows):
    for j in range(cols):
      top, left = pad + i * (h + pad), pad + j * (w + pad)
      out[top:top + h, left:left + w] = x[i, j]
  return out


def save_png(image: np.ndarray, path: str) -> None:
  img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  tmp = path + ".tmp"
  img.save(tmp, format="PNG")
  os.replace(tmp, path)


def _duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without PyTorch where it is not loaded yet:
  tensorboardX imports torch (about 3 s) only to accept torch tensors, and genjax hands it
  floats and numpy arrays. A ``None`` in ``sys.modules`` makes ``import torch`` fail for the
  moment of the import."""
  hide = "torch" not in sys.modules and "tensorboardX" not in sys.modules
  if hide:
    sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    if hide:
      del sys.modules["torch"]
  return SummaryWriter


class Reporter:
  """Writes scalars and image grids for one run."""

  def __init__(self, workdir: str, *, num_steps: int, batch_size: int, value_range,
               process_index: int = 0):
    self.workdir = workdir
    self.num_steps = num_steps
    self.batch_size = batch_size
    self.value_range = tuple(value_range)
    self.writes = process_index == 0
    self.sample_dir = os.path.join(workdir, "samples")
    self.tb = None
    if self.writes:
      os.makedirs(self.sample_dir, exist_ok=True)
      self.tb = _summary_writer_class()(os.path.join(workdir, "tensorboard"), flush_secs=10)

  def scalars(self, step: int, metrics: dict[str, float], *, steps_per_sec: float,
              learning_rates: dict[str, float]) -> None:
    images_per_sec = steps_per_sec * self.batch_size
    eta = (self.num_steps - step) / steps_per_sec if steps_per_sec > 0 else float("nan")
    losses = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
    logging.info("step %d/%d | %s | %.2f steps/s, %.0f img/s | ETA %s", step,
                 self.num_steps, losses, steps_per_sec, images_per_sec,
                 _duration(eta) if np.isfinite(eta) else "?")
    if self.tb is None:
      return
    for k, v in metrics.items():
      self.tb.add_scalar(f"train/{k}", v, step)
    for role, lr in learning_rates.items():
      self.tb.add_scalar(f"learning_rate/{role}", lr, step)
    self.tb.add_scalar("perf/steps_per_sec", steps_per_sec, step)
    self.tb.add_scalar("perf/images_per_sec", images_per_sec, step)

  def text(self, step: int, tag: str, value: str) -> None:
    if self.tb is not None:
      self.tb.add_text(tag, value, step)

  def images(self, step: int, grids: dict[str, np.ndarray]) -> list[str]:
    """Writes ``samples/<name>_<step>.png``, ``samples/<name>.png`` (latest) and TB images."""
    if not self.writes:
      return []
    paths = []
    for name, grid in grids.items():
      image = grid_to_uint8(np.asarray(grid), self.value_range)
      path = os.path.join(self.sample_dir, f"{name}_{step:07d}.png")
      save_png(image, path)
      save_png(image, os.path.join(self.sample_dir, f"{name}.png"))
      paths.append(path)
      self.tb.add_image(f"samples/{name}", image, step, dataformats="HWC")
    return paths

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()
