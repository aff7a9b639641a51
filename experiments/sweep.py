"""What the application experiments share: their training runs, trained one after another and
each resumed where it stopped, and their command line.

The experiment scripts (experiments/denoising.py, experiments/feature_learning.py) name their
runs and configs; :func:`train` trains each with the one training command, in ``root/<run>``,
its console output appended to ``root/<run>.log``. A stopped sweep picks up where it stopped: a
finished run only restores its last checkpoint and returns, an unfinished one resumes exactly.
Runs stay on the machine that trained them, so the committed summary is the record: on another
machine ``evaluate`` keeps the seeds it records and adds the runs found under ``root``, and the
experiments' ``train`` skips recorded runs (:func:`recorded`); denoising, whose table and grid
need every run, refuses to evaluate without them all. ``evaluate`` refuses a ``root`` that does
not exist: a mistyped path would otherwise rewrite the summary from its records alone.
:func:`main` is their ``train`` / ``evaluate`` command line; ``evaluate`` writes the summary
``experiments/results/<experiment>_<dataset>.json`` that experiments/tables.py renders.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "experiments" / "results"
DATASETS = ("mnist", "fashion_mnist")
TRAIN = "genjax.cli.train"  # the training command's module
# The zoo's length and SNGAN's width before they became 15000 steps and DCGAN's 64
# (experiments/configs/_zoo.py): the records made before then pin them in their commands.
ZOO_3000_STEPS = ("--config.num_steps=3000",)
ZOO_WIDTH_32 = ("--config.model.ngf=32", "--config.model.ndf=32")
# SNGAN before its samples came from a generator EMA (2026-12-05): the records made before
# then pin it off (the discriminator trains the same either way).
SNGAN_NO_EMA = ("--config.ema_decay=0",)


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


def recorded(experiment: str, dataset: str) -> dict:
  """The committed summary ``experiments/results/<experiment>_<dataset>.json``, {} if none.

  Runs live on one machine and summaries in the repository: ``evaluate`` keeps a recorded
  seed's figure where its run is not under ``root``, so a sweep continued elsewhere (and its
  ``train``, which skips recorded runs) adds seeds to the summary instead of dropping them."""
  path = RESULTS / f"{experiment}_{dataset}.json"
  return json.loads(path.read_text()) if path.exists() else {}


def recorded_by_command(experiment: str, dataset: str, scored: str) -> dict:
  """``{command: row}`` of the committed summary's rows that hold ``scored`` (see
  :func:`recorded`): a row is the record of the run its command trains, and of no other."""
  rows = recorded(experiment, dataset).get("rows", [])
  return {r["command"]: r for r in rows if scored in r and r.get("command")}


def per_seed(found: dict, previous: dict | None, key: str) -> dict:
  """``{seed: value}``: the runs' ``found`` values (None where a run has not finished), else
  what ``previous`` (a summary cell with ``seeds`` and ``key`` lists) recorded for the seed."""
  before = dict(zip(previous["seeds"], previous[key])) if previous else {}
  return {s: v if v is not None else before[s] for s, v in found.items()
          if v is not None or s in before}


def metric_lines(workdir: pathlib.Path) -> list[dict]:
  """The lines of a run's ``metrics.jsonl`` ([] where it has none yet)."""
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def summary_text(summary: dict) -> str:
  """A summary as ``experiments/results/*.json`` holds it."""
  return json.dumps(summary, indent=1) + "\n"


def mean_std(values: list[float]) -> dict:
  """``mean`` and ``std`` (None for one value) of the seeds' values; {} for none."""
  if not values:
    return {}
  return {"mean": statistics.mean(values),
          "std": statistics.stdev(values) if len(values) > 1 else None}


def main(argv, *, doc: str, experiment: str, train_dataset: Callable[[pathlib.Path, str], None],
         evaluate_dataset: Callable[[pathlib.Path, str], dict],
         datasets: tuple[str, ...] = DATASETS) -> int:
  """``python -m experiments.<experiment> train|evaluate --root=RUNS [--datasets=...]``, the
  datasets among ``datasets`` (all of them by default)."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("action", choices=("train", "evaluate"))
  parser.add_argument("--root", required=True, help="directory holding one workdir per run")
  parser.add_argument("--datasets", default=",".join(datasets))
  args = parser.parse_args(argv)
  root = pathlib.Path(args.root)
  if (args.action == "evaluate" or root.exists()) and not root.is_dir():
    parser.error(f"--root {root} is not a directory: it holds one workdir per run")
  for dataset in args.datasets.split(","):
    if dataset not in datasets:
      parser.error(f"unknown dataset {dataset!r} for {experiment}; valid: {', '.join(datasets)}")
    if args.action == "train":
      train_dataset(root, dataset)
    else:
      path = RESULTS / f"{experiment}_{dataset}.json"
      path.write_text(summary_text(evaluate_dataset(root, dataset)))
      print(f"wrote {path}", flush=True)
  return 0
