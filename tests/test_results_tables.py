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
