"""Runs an experiment's training runs one after another, each resumed where it stopped.

The experiment scripts (experiments/denoising.py, experiments/feature_learning.py) name their
runs and configs; this trains each with the one training command, in ``root/<run>``, its console
output appended to ``root/<run>.log``. A stopped sweep picks up where it stopped: a finished run
only restores its last checkpoint and returns, an unfinished one resumes exactly.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
TRAIN = "genjax.cli.train"  # the training command's module


def command(config: str, workdir: str, overrides: tuple[str, ...] = ()) -> str:
  """The command line that trains one run, as RESULTS.md and the summaries quote it."""
  return " ".join(["python", "-m", TRAIN, f"--config=experiments/configs/{config}.py",
                   f"--workdir={workdir}", *overrides])


def train(root: pathlib.Path, run: str, config: str, overrides: tuple[str, ...] = ()) -> None:
  """Trains (or resumes, or finds finished) ``root/run``; raises if the command fails."""
  root.mkdir(parents=True, exist_ok=True)
  print(command(config, str(root / run), overrides), flush=True)
  with open(root / f"{run}.log", "a") as log:
    subprocess.run([sys.executable, "-m", TRAIN, f"--config=experiments/configs/{config}.py",
                    f"--workdir={root / run}", *overrides], cwd=REPO, stdout=log,
                   stderr=subprocess.STDOUT, check=True)
