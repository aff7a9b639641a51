"""experiments/RESULTS.md's tables are what `python -m experiments.tables` writes from the
committed metrics files: a figure cannot drift from its run."""

import json
import shutil

import pytest

from experiments import tables


def test_results_tables_match_their_metrics_files():
  text = tables.RESULTS_MD.read_text()
  assert tables.regenerate(text) == text, "run: python -m experiments.tables"


def test_a_changed_metrics_file_changes_its_table(tmp_path, monkeypatch):
  runs = tmp_path / "results"
  shutil.copytree(tables.RUNS, runs)
  monkeypatch.setattr(tables, "RUNS", runs)
  text = tables.RESULTS_MD.read_text()
  path = runs / "pix2pix_edges2fashion" / "metrics.jsonl"
  lines = [json.loads(x) for x in path.read_text().splitlines()]
  lines[-1]["psnr"] = 99.0
  path.write_text("".join(json.dumps(x) + "\n" for x in lines))
  new = tables.regenerate(text)
  assert new != text and "| 99.00 |" in new
  assert tables.main(["--check"]) == 1 and tables.RESULTS_MD.read_text() == text
  path.unlink()
  with pytest.raises(FileNotFoundError, match="pix2pix_edges2fashion/metrics.jsonl is missing"):
    tables.regenerate(text)


def test_a_seeded_row_is_the_mean_and_sample_std_of_its_runs(tmp_path, monkeypatch):
  runs = tmp_path / "results"
  shutil.copytree(tables.RUNS, runs)
  monkeypatch.setattr(tables, "RUNS", runs)
  row = next(r for t in tables.TABLES.values() for r in t.rows if r.seeds)
  table = next(t for t in tables.TABLES.values() if row in t.rows)
  paths = [runs / run / "metrics.jsonl" for run in row.runs()]
  for path, fid in zip(paths, (1.0, 2.0, 4.0)):
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[-1]["fid"] = fid
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
  # mean 7/3, sample std sqrt(7/3) = 1.5275
  assert "| 2.33 ± 1.53 |" in tables.render(table)


def _write(path, summary):
  path.write_text(json.dumps(summary))


def test_the_application_tables_render_their_summaries(tmp_path, monkeypatch):
  monkeypatch.setattr(tables, "RUNS", tmp_path)
  scores = lambda a, b: {"psnr": a, "ssim": b}  # pylint: disable=unnecessary-lambda-assignment
  for dataset in ("mnist", "fashion_mnist"):
    _write(tmp_path / f"denoising_{dataset}.json", {"rows": [
        {"kind": "gaussian", "level": 0.3, "methods": {
            "noisy input": scores(30.0, 0.5), "DAE": scores(20.0, 0.9),
            "median": {**scores(21.5, 0.7), "param": 3}}}]})
    _write(tmp_path / f"feature_learning_{dataset}.json", {"rows": [
        {"representation": "raw pixels", "dim": 784, "test_accuracy": 0.9254, "C": 0.1},
        {"representation": "DCGAN discriminator", "missing": True} if dataset != "mnist" else
        {"representation": "DCGAN discriminator", "dim": 4096, "test_accuracy": 0.99, "C": 1.0}]})
  denoising = tables.render_denoising().splitlines()
  assert denoising[0] == "| dataset | noise | noisy input | DAE | median |"
  # the best PSNR among the denoisers is bold, never the noisy input's
  assert denoising[2] == "| MNIST | Gaussian σ = 0.3 | 30.00 / 0.500 | 20.00 / 0.900 | **21.50 / 0.700** |"
  features = tables.render_feature_learning().splitlines()
  assert features[2] == "| raw pixels | 784 | 92.54% | 0.1 | 92.54% | 0.1 |"
  assert features[3] == "| DCGAN discriminator | 4096 | 99.00% | 1 | not trained yet | – |"
  (tmp_path / "denoising_fashion_mnist.json").unlink()
  with pytest.raises(FileNotFoundError, match="denoising_fashion_mnist.json is missing"):
    tables.render_denoising()
