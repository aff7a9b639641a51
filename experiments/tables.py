"""Regenerates the tables of experiments/RESULTS.md from the committed metrics files.

Each table lives between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in RESULTS.md and
is written from ``experiments/results/<run>/metrics.jsonl`` (the lines the training loop's
evaluation appended, copied from the run's workdir) or, for the application experiments, from
the JSON summary their script wrote (``experiments/results/<experiment>_<dataset>.json``), so a
figure cannot drift from its run.

  python -m experiments.tables            # rewrite the tables in place
  python -m experiments.tables --check    # exit 1 if a table differs from its metrics files
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import statistics
import sys

from experiments import sweep

HERE = pathlib.Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RUNS = HERE / "results"
SAMPLES = HERE / "samples"  # the grids the tables link


@dataclasses.dataclass(frozen=True)
class Column:
  header: str
  key: str
  fmt: str = "{:.4g}"
  scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Row:
  """One run, or with ``seeds`` one run per seed (``run`` holds ``{seed}``): then each column
  is the mean ± the sample standard deviation over the seeds, and the grids are the first
  seed's."""
  label: str
  run: str  # experiments/results/<run>/metrics.jsonl
  config: str
  overrides: str = ""
  grids: tuple[str, ...] = ("translations",)  # experiments/samples/<run>_<grid>.png
  seeds: tuple[int, ...] = ()

  def runs(self) -> list[str]:
    return [self.run.format(seed=s) for s in self.seeds] if self.seeds else [self.run]


@dataclasses.dataclass(frozen=True)
class Table:
  columns: tuple[Column, ...]
  rows: tuple[Row, ...]


P2P = "pix2pix_edges2fashion"
CYC = "cyclegan_colored_mnist"
# the zoo's step count and SNGAN's width before they became 15000 and 64
S3000 = " " + " ".join(sweep.ZOO_3000_STEPS)
W32 = " " + " ".join(sweep.ZOO_WIDTH_32) + S3000
NO_EMA = " " + " ".join(sweep.SNGAN_NO_EMA)  # SNGAN before its generator EMA
TABLES = {
    "pix2pix": Table(
        columns=(Column("L1 ↓", "l1"), Column("PSNR (dB) ↑", "psnr", "{:.2f}"),
                 Column("SSIM ↑", "ssim", "{:.3f}"), Column("classifier-FID ↓", "fid", "{:.2f}"),
                 Column("KID ↓", "kid_mean", "{:.2f}"),
                 Column("class kept (classifier accuracy) ↑", "label_accuracy", "{:.1%}")),
        rows=(Row("L1 + cGAN (λ = 100)", "pix2pix_edges2fashion", P2P),
              Row("L1 alone", "pix2pix_edges2fashion_l1", P2P, " --config.method.gan_weight=0"),
              Row("cGAN alone", "pix2pix_edges2fashion_cgan", P2P,
                  " --config.method.lambda_L1=0"))),
    "cyclegan": Table(
        columns=(Column("PSNR vs true (dB) ↑", "psnr", "{:.2f}"),
                 Column("SSIM vs true ↑", "ssim", "{:.3f}"), Column("L1 vs true ↓", "l1"),
                 Column("digit kept (classifier accuracy) ↑", "label_accuracy", "{:.1%}"),
                 Column("cycle L1 ↓", "cycle_l1"),
                 Column("classifier-FID ↓", "fid", "{:.2f}")),
        rows=(Row("CycleGAN (LSGAN, cycle λ = 10, pools of 50)", "cyclegan_colored_mnist",
                  CYC, grids=("translations", "translations_BtoA")),)),
    "rerun": Table(
        columns=(Column("classifier-FID ↓", "fid", "{:.2f}"), Column("KID ↓", "kid_mean", "{:.2f}")),
        rows=(Row("AC-GAN, MNIST (rerun 2026-12-02)", "acgan_mnist_rerun", "acgan_mnist",
                  " --config.num_steps=5000 --config.conv_backend=xla", grids=("samples",)),
              Row("AC-GAN, MNIST, default kernels, 3 seeds", "acgan_mnist_s{seed}",
                  "acgan_mnist", " --config.num_steps=5000", grids=("samples",),
                  seeds=(0, 1, 2)),
              Row("DCGAN (pytorch/examples widths), MNIST, default kernels, seed 0",
                  "dcgan_mnist_s0", "dcgan_mnist", S3000, grids=("samples",)),
              Row("SNGAN (hinge), MNIST, width 32, default kernels, seed 0", "sngan_mnist_s0",
                  "sngan_mnist", W32 + NO_EMA, grids=("samples",)),
              Row("SNGAN (hinge), MNIST, DCGAN's widths (64), default kernels, seed 0",
                  "sngan_mnist_w64_s0", "sngan_mnist",
                  S3000 + NO_EMA + " --config.eval.every=1000",
                  grids=("samples",)),
              Row("DCGAN (pytorch/examples widths), Fashion-MNIST, default kernels, seed 0",
                  "dcgan_fashion_mnist_s0", "dcgan_fashion_mnist", S3000, grids=("samples",)),
              Row("SNGAN (hinge), Fashion-MNIST, width 32, default kernels, seed 0",
                  "sngan_fashion_mnist_s0", "sngan_fashion_mnist", W32 + NO_EMA,
                  grids=("samples",)),
              Row("SNGAN (hinge), Fashion-MNIST, DCGAN's widths (64), default kernels, seed 0",
                  "sngan_fashion_mnist_w64_s0", "sngan_fashion_mnist",
                  S3000 + NO_EMA + " --config.eval.every=1000",
                  grids=("samples",)))),
}


def _summary(name: str) -> dict:
  path = RUNS / f"{name}.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing: run the experiment's evaluate step")
  return json.loads(path.read_text())


DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
LEVEL_NAMES = {"gaussian": "Gaussian σ", "salt_pepper": "salt & pepper p"}


def render_denoising() -> str:
  """PSNR (dB) / SSIM per (dataset, noise, level) and method; the best PSNR of a row in bold."""
  out = []
  for dataset in ("mnist", "fashion_mnist"):
    summary = _summary(f"denoising_{dataset}")
    methods = list(summary["rows"][0]["methods"])
    if not out:
      out += ["| dataset | noise | " + " | ".join(methods) + " |",
              "|" + "---|" * (len(methods) + 2)]
    for row in summary["rows"]:
      scores = row["methods"]
      best = max((m for m in methods if m != "noisy input"), key=lambda m: scores[m]["psnr"])
      cells = [f"{scores[m]['psnr']:.2f} / {scores[m]['ssim']:.3f}" for m in methods]
      cells = [f"**{c}**" if m == best else c for m, c in zip(methods, cells)]
      out.append(f"| {DATASET_NAMES[dataset]} | {LEVEL_NAMES[row['kind']]} = {row['level']:g} | "
                 + " | ".join(cells) + " |")
  return "\n".join(out)


def render_feature_learning() -> str:
  """Linear-probe test accuracy per representation and dataset."""
  summaries = {d: _summary(f"feature_learning_{d}") for d in ("mnist", "fashion_mnist")}
  head = ["representation", "features"]
  for d in summaries:
    head += [f"{DATASET_NAMES[d]} test accuracy", f"{DATASET_NAMES[d]} C"]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  by_label = [{r["representation"]: r for r in s["rows"]} for s in summaries.values()]
  for label in by_label[0]:
    dims = {str(rows[label]["dim"]) for rows in by_label if "dim" in rows[label]}
    cells = [label, "/".join(sorted(dims))]
    for rows in by_label:
      row = rows[label]
      cells += (["not trained yet", "–"] if row.get("missing") else
                [f"{row['test_accuracy']:.2%}", f"{row['C']:g}"])
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def last_eval(run: str) -> dict:
  """The last evaluation line of a committed run."""
  path = RUNS / run / "metrics.jsonl"
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing: copy the run's metrics.jsonl there")
  evals = [x for x in sweep.metric_lines(RUNS / run) if "num_samples" in x]
  if not evals:
    raise ValueError(f"{path} has no evaluation line")
  return evals[-1]


def render(table: Table) -> str:
  head = ["setting", "steps", *(c.header for c in table.columns), "metrics", "grids", "command"]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row in table.rows:
    runs = row.runs()
    evals = [last_eval(run) for run in runs]
    cells = [row.label, "/".join(sorted({str(m["step"]) for m in evals}))]
    for c in table.columns:
      values = [m[c.key] * c.scale for m in evals if c.key in m]
      if len(values) < len(evals):
        cells.append("–")
      elif row.seeds:
        cells.append(f"{c.fmt.format(statistics.mean(values))} ± "
                     f"{c.fmt.format(statistics.stdev(values))}")
      else:
        cells.append(c.fmt.format(values[0]))
    names = [f"seed {s}" for s in row.seeds] if row.seeds else ["jsonl"]
    cells.append(", ".join(f"[{name}](results/{run}/metrics.jsonl)"
                           for name, run in zip(names, runs)))
    for grid in row.grids:
      if not (SAMPLES / f"{runs[0]}_{grid}.png").exists():
        raise FileNotFoundError(f"experiments/samples/{runs[0]}_{grid}.png is missing: copy the "
                                f"run's samples/{grid}.png there")
    cells.append(", ".join(f"[{g}](samples/{runs[0]}_{g}.png)" for g in row.grids))
    seed = f" --config.seed=S` (S = {', '.join(map(str, row.seeds))})" if row.seeds else "`"
    cells.append(f"`python -m genjax.cli.train --config=experiments/configs/{row.config}.py "
                 f"--workdir=WORKDIR{row.overrides}{seed}")
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def _over_seeds(values: list[float], num_seeds: int, fmt: str = "{:.1f}", *,
                count_all: bool = True) -> str:
  """``mean ± std`` of per-seed figures (one value alone; "not trained yet" without any),
  saying how many of ``num_seeds`` are in where some are missing, and, if ``count_all``,
  ``(n seeds)`` where all are."""
  if not values:
    return "not trained yet"
  stats = sweep.mean_std(values)
  text = fmt.format(stats["mean"]) + ("" if stats["std"] is None
                                      else " ± " + fmt.format(stats["std"]))
  if len(values) < num_seeds:
    return text + f" ({len(values)} of {num_seeds} seeds)"
  return text + (f" ({num_seeds} seed{'s' * (num_seeds > 1)})" if count_all else "")


def render_anomaly() -> str:
  """AUROC (%) per normal class, method and dataset, with the Deep SVDD paper's column."""
  summaries = {d: _summary(f"anomaly_{d}") for d in ("mnist", "fashion_mnist")}
  head, columns = ["normal class"], []
  for d, summary in summaries.items():
    for row in summary["rows"]:
      seeds = len(row["seeds"])
      head.append(f"{DATASET_NAMES[d]}: {row['method']} "
                  f"({'mean ± std, ' if seeds > 1 else ''}{seeds} seed{'s' * (seeds > 1)})")
      columns.append(row)
      if "paper" in row["classes"][0]:
        head.append(f"{DATASET_NAMES[d]}: {row['method']}, Ruff et al. (10 seeds)")
        columns.append("paper")
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for k in range(10):
    cells, last = [str(k)], None
    for col in columns:
      if col == "paper":
        paper = last["classes"][k]["paper"]
        cells.append(f"{paper['mean']:.1f} ± {paper['std']:.1f}")
      else:
        cells.append(_over_seeds(col["classes"][k]["auroc"], len(col["seeds"]), count_all=False))
        last = col
    out.append("| " + " | ".join(cells) + " |")
  cells, last = ["mean over classes"], None
  for col in columns:
    if col == "paper":
      cells.append(f"{sum(c['paper']['mean'] for c in last['classes']) / 10:.1f}")
    else:
      mean = col["mean_over_classes"]
      cells.append("–" if mean is None else f"{mean:.1f}")
      last = col
  out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


def render_augmentation() -> str:
  """Test accuracy (%) per dataset, labelled-set size and setting: mean ± std over seeds."""
  out = []
  for dataset in ("mnist", "fashion_mnist"):
    summary = _summary(f"augmentation_{dataset}")
    labels = list(dict.fromkeys(r["label"] for r in summary["rows"]))
    if not out:
      out += ["| dataset | labelled examples | " + " | ".join(labels) + " |",
              "|" + "---|" * (len(labels) + 2)]
    for n in dict.fromkeys(r["n"] for r in summary["rows"]):
      cells = [_over_seeds(r["accuracy"], summary["num_seeds"], count_all=False)
               for r in summary["rows"] if r["n"] == n]
      out.append(f"| {DATASET_NAMES[dataset]} | {n} | " + " | ".join(cells) + " |")
  return "\n".join(out)


def render_likelihood() -> str:
  """Test NLL (nats) per objective, beside Burda et al.'s Table 1."""
  summary = _summary("likelihood_mnist")
  out = [f"| objective | Burda et al. ({summary['paper'].split('(')[-1].rstrip(')')}) | genjax, "
         f"{summary['passes']} passes: NLL (5,000-sample bound) | −ELBO | 100-sample bound "
         f"after each pass | command |", "|---|---|---|---|---|---|"]
  for row in summary["rows"]:
    curve = " → ".join(f"{p['nll']:.1f}" for p in row["curve"]) or "–"
    cells = ([row["row"], f"{row['paper_nll']:.2f}"] +
             (["not trained yet", "–"] if row.get("missing") else
              [f"{row['test_nll']:.2f}", f"{row['test_nll_elbo']:.2f}"]) +
             [curve, f"`{row['command']}`"])
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class GanAccuracyRow:
  """A paper figure that is a GAN discriminator's test accuracy: each seed's from the last
  ``gan_accuracy`` line of ``experiments/results/<run>/metrics.jsonl`` (``run`` holds
  ``{seed}``), as accuracy or error (%)."""
  paper: str
  setting: str
  number: str
  config: str
  run: str
  seeds: tuple[int, ...]
  error: bool
  command: str


GAN_ACCURACY = (
    GanAccuracyRow(
        "Chen et al., InfoGAN, NeurIPS 2016 (the MNIST experiment)",
        "MNIST: the 10-way categorical code as a classifier (test accuracy, codes matched to the "
        "digits one-to-one), 10000 steps", "≈ 95% (5% error)",
        "infogan_mnist", "infogan_mnist_s{seed}", (0, 1, 2), False,
        "python -m genjax.cli.train --config=experiments/configs/infogan_mnist.py "
        "--workdir=WORKDIR --config.seed=S; python -m genjax.cli.gan_accuracy "
        "--workdir=WORKDIR"),
    GanAccuracyRow(
        "Salimans et al., Improved Techniques for Training GANs, NeurIPS 2016, Table 1",
        "MNIST, 100 labels, feature matching: test error of the discriminator (48,000 steps)",
        "0.93 ± 0.07%", "sgan_mnist", "sgan_mnist_s{seed}", (0, 1, 2), True,
        "python -m genjax.cli.train --config=experiments/configs/sgan_mnist.py "
        "--workdir=WORKDIR --config.seed=S; python -m genjax.cli.gan_accuracy --workdir=WORKDIR"),
)


def _gan_accuracy(run: str) -> dict | None:
  """The last ``gan_accuracy`` line of a committed run, or None."""
  return next((line for line in reversed(sweep.metric_lines(RUNS / run))
               if line.get("source") == "gan_accuracy"), None)


def render_reproduction() -> str:
  """Every paper number genjax reproduces, beside genjax's figure (mean ± std over seeds) and
  the committed summary it comes from."""
  out = ["| paper | setting | paper's number | genjax (mean ± std over seeds) | record | config "
         "| command |", "|---|---|---|---|---|---|---|"]
  anomaly = _summary("anomaly_mnist")
  for row in anomaly["rows"]:
    if "paper" not in row["classes"][0]:
      continue
    # the mean over the ten classes of each seed that has finished all ten
    per_seed = [statistics.mean(c["auroc"][c["seeds"].index(s)] for c in row["classes"])
                for s in row["seeds"] if all(s in c["seeds"] for c in row["classes"])]
    paper = statistics.mean(c["paper"]["mean"] for c in row["classes"])
    out.append(
        f"| {anomaly['paper'].split(', Table')[0]}, Table 1 | MNIST, {row['method']}: AUROC (%) "
        f"averaged over the 10 normal classes ({row['steps']} steps per class) | "
        f"{paper:.1f} (10 seeds) | "
        f"{_over_seeds(per_seed, len(row['seeds']))} | "
        f"[anomaly_mnist.json](results/anomaly_mnist.json) | `{row['config']}` | "
        f"`{anomaly['sweep']}` (each run's command is in the record) |")
  likelihood = _summary("likelihood_mnist")
  paper = likelihood["paper"].split(" (")[0]
  for row in likelihood["rows"]:
    ours = ("not trained yet" if row.get("missing") else
            f"{row['test_nll']:.2f} (1 seed, {likelihood['passes']} passes)")
    out.append(f"| {paper} | dynamically binarised MNIST, {row['row']}: test NLL (nats, "
               f"5,000-sample bound) | {row['paper_nll']:.2f} (3,280 passes) | {ours} | "
               f"[likelihood_mnist.json](results/likelihood_mnist.json) | `iwae_mnist` | "
               f"`{row['command']}` |")
  for row in GAN_ACCURACY:
    records = {s: _gan_accuracy(row.run.format(seed=s)) for s in row.seeds}
    records = {s: r for s, r in records.items() if r is not None}
    values = [100 * (1 - r["accuracy"] if row.error else r["accuracy"]) for r in records.values()]
    ours = _over_seeds(values, len(row.seeds), "{:.2f}%")
    links = ", ".join(f"[seed {s}](results/{row.run.format(seed=s)}/metrics.jsonl)"
                      for s in records) or "–"
    out.append(f"| {row.paper} | {row.setting} | {row.number} | {ours} | {links} | "
               f"`{row.config}` | `{row.command}` |")
  return "\n".join(out)


_PERCENT = "{:.2f}%"
# a zoo row's classifier figure: (key in its per-seed record, label, scale of the value, format)
_FAMILY_FIGURES = {"sgan": ("accuracy", "test error", lambda a: 100 * (1 - a), _PERCENT),
                   "infogan": ("accuracy", "categorical code, test accuracy",
                               lambda a: 100 * a, _PERCENT)}
_LABEL_FIGURE = ("label_accuracy", "samples classified as their label", lambda a: 100 * a,
                 _PERCENT)
_MODES_FIGURE = ("class_kl", "class shares' KL to the data's (10⁻³ nats)", lambda kl: 1000 * kl,
                 "{:.2f}")


def _classifier_figure(family: str, per_seed: dict, num_seeds: int) -> str:
  """A zoo row's classifier figure: SGAN's test error, InfoGAN's categorical code as a
  classifier, the share of a conditional family's samples classified as their label, or else
  how far its samples' class shares are from the data's (KL, the ``modes`` metric)."""
  key, what, scale, form = _FAMILY_FIGURES.get(family, _LABEL_FIGURE)
  if not any(key in v for v in per_seed.values()):
    key, what, scale, form = _MODES_FIGURE
  values = [scale(v[key]) for v in per_seed.values() if key in v]
  return f"{what}: {_over_seeds(values, num_seeds, form, count_all=False)}" if values else ""


def render_zoo(dataset: str) -> str:
  """The zoo at its committed configs: classifier-FID/KID (mean ± std over seeds), the ratio to
  DCGAN's FID, the first recorded seed's FID curve, the classifier figures and seed 0's
  samples."""
  summary = _summary(f"zoo_{dataset}")
  rows = summary["rows"]
  dcgan = next(r for r in rows if r["family"] == "dcgan")["fid"]
  out = ["| family | config | steps | classifier-FID ↓ | KID ↓ | × DCGAN's FID | FID along "
         "the run (first seed) | classifier figure | samples |", "|" + "---|" * 9]
  for row in rows:
    per_seed, n = row["per_seed"], len(row["seeds"])
    fid = _over_seeds([v["fid"] for v in per_seed.values()], n, "{:.2f}", count_all=False)
    kid = _over_seeds([v["kid"] for v in per_seed.values()], n, "{:.2f}", count_all=False)
    ratio = (f"{row['fid']['mean'] / dcgan['mean']:.2f}×" if row["fid"] and dcgan else "–")
    first = next(iter(per_seed.values()), None)
    curve = " → ".join(f"{value:.1f}" for _, value in first["curve"]) if first else "–"
    grid = f"zoo/{row['family']}_{dataset}_s{row['seeds'][0]}.png"
    recorded = str(row["seeds"][0]) in per_seed  # a grid of a dropped seed is not shown
    samples = f"[png](samples/{grid})" if recorded and (SAMPLES / grid).exists() else "–"
    cells = [row["label"], f"`{row['config']}`", str(row["steps"]), fid, kid, ratio, curve,
             _classifier_figure(row["family"], per_seed, n), samples]
    out.append("| " + " | ".join(cells) + " |")
  return "\n".join(out)


SUMMARY_TABLES = {"reproduction": render_reproduction, "denoising": render_denoising,
                  "feature_learning": render_feature_learning, "anomaly": render_anomaly,
                  "likelihood": render_likelihood, "augmentation": render_augmentation,
                  **{f"zoo_{d}": (lambda d=d: render_zoo(d)) for d in DATASET_NAMES}}


def regenerate(text: str) -> str:
  rendered = {**{name: (lambda t=table: render(t)) for name, table in TABLES.items()},
              **SUMMARY_TABLES}
  for name, make in rendered.items():
    pattern = re.compile(rf"(<!-- table:{name} -->\n)(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
    if not pattern.search(text):
      raise ValueError(f"RESULTS.md has no <!-- table:{name} --> ... <!-- /table:{name} --> block")
    text = pattern.sub(lambda m, t=make: m.group(1) + t() + "\n" + m.group(2), text)
  return text


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="exit 1 if RESULTS.md's tables differ from the metrics files")
  args = parser.parse_args(argv)
  text = RESULTS_MD.read_text()
  new = regenerate(text)
  if args.check:
    if new != text:
      print("RESULTS.md's tables differ from experiments/results/*/metrics.jsonl: run "
            "python -m experiments.tables", file=sys.stderr)
      return 1
    return 0
  RESULTS_MD.write_text(new)
  return 0


if __name__ == "__main__":
  sys.exit(main())
