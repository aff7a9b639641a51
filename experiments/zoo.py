r"""The GAN zoo trained to convergence (issue 17 §6): every family's committed config, seeds 0-2
on MNIST and seed 0 on Fashion-MNIST, classifier-FID/KID about five times along the run and at
its end (experiments/configs/_zoo.py), beside DCGAN's on the same dataset (the target: every
family within 2x of it).

Runs ``<family>_<dataset>_s<seed>``, each the committed config
``experiments/configs/<family>_<dataset>.py`` with ``--config.seed=S`` and nothing else, so
that the committed configs are the settings the table reports. InfoGAN and SGAN runs are then
scored as classifiers (``genjax.cli.gan_accuracy``: the categorical code, the discriminator's
classes). Seed by seed (every family's seed 0 first); a stopped sweep picks up where it stopped
(experiments/sweep.py), and the seeds the committed summary records under the config's current
settings are not trained again. ``evaluate`` writes the summary
``experiments/results/zoo_<dataset>.json`` (each seed's last evaluation and its curve) and
copies seed 0's sample grid to ``experiments/samples/zoo/<run>.png``. Each row records its
config's settings (:func:`spec`); a recorded seed is dropped when they change.

  python -m experiments.zoo train --root=RUNS [--datasets=mnist]
  python -m experiments.zoo evaluate --root=RUNS   # -> experiments/results/zoo_<dataset>.json
"""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil
import subprocess
import sys
from typing import NamedTuple

from experiments import sweep
from genjax import checkpoint
from genjax.config import base_config

# (family, label) in the table's order; DCGAN, the yardstick, first
FAMILIES = (("dcgan", "DCGAN"), ("lsgan", "DCGAN + least squares (LSGAN)"),
            ("hinge", "DCGAN + hinge"), ("wgan", "WGAN (clipping, n_critic 5 + bursts)"),
            ("wgan_gp", "WGAN-GP (λ = 10, n_critic 5)"), ("sngan", "SNGAN (hinge, EMA)"),
            ("sagan", "SAGAN (self-attention, TTUR, EMA)"), ("cgan", "cGAN-projection (hinge)"),
            ("acgan", "AC-GAN"), ("infogan", "InfoGAN"), ("sgan", "SGAN (100 labels)"))
CLASSIFIERS = ("infogan", "sgan")  # scored by genjax.cli.gan_accuracy after training
SAMPLES = sweep.REPO / "experiments" / "samples" / "zoo"


def seeds(dataset: str) -> tuple[int, ...]:
  return (0, 1, 2) if dataset == "mnist" else (0,)


def run_name(family: str, dataset: str, seed) -> str:
  return f"{family}_{dataset}_s{seed}"


def _config(family: str, dataset: str):
  return importlib.import_module(f"experiments.configs.{family}_{dataset}").get_config()


class Spec(NamedTuple):
  """What a family's committed config fixes for the table, from one build of it."""
  steps: int  # num_steps: where a run's figures are read
  settings: dict  # {dotted key: value} where it departs from its model's defaults, less bookkeeping
  committed: dict  # {dotted key: value} of the whole config, as a run's checkpoint stores it


# what moves neither a run's trajectory nor its final figures
_BOOKKEEPING = ("seed", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints",
                "eval.every")


def spec(family: str, dataset: str) -> Spec:
  """The committed config ``experiments/configs/<family>_<dataset>.py``, built once.

  ``settings`` compares it with ``genjax.config.base_config`` of its model: what a recorded
  seed was trained with. Keys added to the defaults later leave it as it is; a changed setting
  drops the seeds. ``committed`` is what :func:`check_trained` holds a workdir's run to."""
  config = _config(family, dataset)
  flat = _flat(config.to_dict())
  defaults = _flat(base_config(config.model.name).to_dict())
  settings = {k: v for k, v in flat.items()
              if k not in _BOOKKEEPING and (k not in defaults or defaults[k] != v)}
  return Spec(config.num_steps, settings, flat)


def _flat(tree: dict) -> dict:
  """``{dotted key: value}`` of a nested config dict, as JSON stores it (tuples as lists)."""
  def walk(d, prefix=""):
    for k, v in d.items():
      if isinstance(v, dict):
        yield from walk(v, f"{prefix}{k}.")
      else:
        yield f"{prefix}{k}", v
  return json.loads(json.dumps(dict(walk(tree))))


def check_trained(workdir: pathlib.Path, config: dict, seed: int) -> None:
  """Raises SystemExit (one line) if ``workdir`` holds a run trained with other settings than
  the committed ``config`` (``spec(...).committed``) and ``seed`` (its newest checkpoint's config
  says): its figures would stand in the row under the wrong settings, and resuming it would mix
  two. Keys only one of them has (added to the defaults since) and which metrics are recorded
  are not compared."""
  directory = workdir / "checkpoints"
  if not directory.is_dir():
    return
  with checkpoint.Checkpointer(str(directory), read_only=True) as ckpt:
    step = ckpt.latest_step()
    if step is None:
      return
    try:
      trained = _flat(json.loads(ckpt.read_meta(step)["config"]))
    except checkpoint.UnreadableCheckpoint as e:
      raise SystemExit(f"{e}: move {workdir} aside (or delete it) to train {workdir.name} "
                       f"afresh, or resume it by hand with --config.resume_skip_corrupt=True"
                       ) from None
  expected = {**config, "seed": seed}
  ignored = {*_BOOKKEEPING, "eval.metrics"} - {"seed"}
  differ = [f"{k}={trained[k]!r} (expected {expected[k]!r})" for k in sorted(trained)
            if k in expected and k not in ignored and trained[k] != expected[k]]
  if differ:
    raise SystemExit(f"{workdir} was trained with {', '.join(differ)}; move it aside (or "
                     f"delete it) to train {workdir.name} afresh")


def overrides(seed) -> tuple[str, ...]:
  return (f"--config.seed={seed}",)


def final(workdir: pathlib.Path, num_steps: int) -> dict | None:
  """The run's figures at its last step ``num_steps`` (classifier-FID, KID, and for the
  CLASSIFIERS their gan_accuracy) with its FID curve; None where it has not got there."""
  lines = sweep.metric_lines(workdir)
  evals = [x for x in lines if "fid" in x and x.get("source") == "train"]
  if not evals or evals[-1]["step"] != num_steps:
    return None
  out = {"fid": evals[-1]["fid"], "kid": evals[-1]["kid_mean"],
         "curve": [[x["step"], x["fid"]] for x in evals],
         # the convolution kernels it trained on, and oneDNN's ISA where those were oneDNN's
         **{k: evals[-1][k] for k in ("conv_kernels", "onednn") if k in evals[-1]}}
  # conditional families: samples classified as their label; every family: the spread of its
  # samples over the classes (the ``modes`` metric); by the run's last evaluation or by a later
  # ``genjax.cli.evaluate`` of the same checkpoint (the same samples)
  for key in ("label_accuracy", "class_kl"):
    found = [x for x in lines if key in x and x["step"] == num_steps]
    if found:
      out[key] = found[-1][key]
  accuracy = [x for x in lines if x.get("source") == "gan_accuracy" and x["step"] == num_steps]
  if accuracy:
    out["accuracy"] = accuracy[-1]["accuracy"]
  return out


def _recorded(dataset: str) -> dict:
  """``{family: row}`` of the committed summary (see sweep.recorded)."""
  return {r["family"]: r for r in sweep.recorded("zoo", dataset).get("rows", [])}


def _recorded_seeds(row: dict | None, current: dict) -> dict:
  """``{seed: figures}`` a summary row records under the config's ``current`` settings
  (:func:`spec`; none after they changed)."""
  if not row or row.get("settings") != current:
    return {}
  return {int(s): v for s, v in row["per_seed"].items()}


def train(root: pathlib.Path, dataset: str) -> None:
  recorded = _recorded(dataset)
  specs = {family: spec(family, dataset) for family, _ in FAMILIES}
  done = {family: _recorded_seeds(recorded.get(family), specs[family].settings)
          for family, _ in FAMILIES}
  for seed in seeds(dataset):
    for family, _ in FAMILIES:
      run, num_steps = run_name(family, dataset, seed), specs[family].steps
      if seed in done[family] and not (root / run).exists():
        continue
      check_trained(root / run, specs[family].committed, seed)
      sweep.train(root, run, f"{family}_{dataset}", overrides(seed))
      if family in CLASSIFIERS and "accuracy" not in (final(root / run, num_steps) or {}):
        subprocess.run([sys.executable, "-m", "genjax.cli.gan_accuracy",
                        f"--workdir={root / run}"], cwd=sweep.REPO, check=True)


def evaluate(root: pathlib.Path, dataset: str) -> dict:
  rows, before = [], _recorded(dataset)
  for family, label in FAMILIES:
    config, (num_steps, current, config_flat) = f"{family}_{dataset}", spec(family, dataset)
    per_seed = _recorded_seeds(before.get(family), current)
    for seed in seeds(dataset):
      run = run_name(family, dataset, seed)
      check_trained(root / run, config_flat, seed)
      found = final(root / run, num_steps)
      if found is not None:
        per_seed[seed] = found
        grid = root / run / "samples" / "samples.png"
        if seed == seeds(dataset)[0] and grid.exists():
          SAMPLES.mkdir(parents=True, exist_ok=True)
          shutil.copyfile(grid, SAMPLES / f"{run}.png")
    commands = [sweep.command(config, f"RUNS/{run_name(family, dataset, 'S')}", overrides("S"))]
    if family in CLASSIFIERS:
      commands.append(f"python -m genjax.cli.gan_accuracy "
                      f"--workdir=RUNS/{run_name(family, dataset, 'S')}")
    per_seed = dict(sorted(per_seed.items()))
    rows.append({"family": family, "label": label, "config": config, "steps": num_steps,
                 "settings": current,
                 "seeds": list(seeds(dataset)), "commands": commands,
                 "per_seed": {str(s): v for s, v in per_seed.items()},
                 "fid": sweep.mean_std([v["fid"] for v in per_seed.values()])})
  return {"experiment": "the GAN zoo, committed configs", "dataset": dataset,
          "metric": ("classifier-FID and KID (raw MMD²) of 2048 samples against the test split, "
                     "experiments/classifiers/<dataset>"),
          "target": "classifier-FID within 2x of DCGAN's on the same dataset",
          "sweep": "python -m experiments.zoo train --root=RUNS", "rows": rows}


if __name__ == "__main__":
  sys.exit(sweep.main(sys.argv[1:], doc=__doc__, experiment="zoo", train_dataset=train,
                      evaluate_dataset=evaluate))
