"""experiments/RESULTS.md's tables are what `python -m experiments.tables` writes from the
committed metrics files: a figure cannot drift from its run."""

import json
import shutil

import numpy as np
import pytest

from experiments import anomaly
from experiments import augmentation
from experiments import denoising
from experiments import fanogan_residuals
from experiments import likelihood
from experiments import sweep
from experiments import tables
from experiments import zoo
from genjax import checkpoint


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


def test_the_anomaly_and_likelihood_tables_render_their_summaries(tmp_path, monkeypatch):
  monkeypatch.setattr(tables, "RUNS", tmp_path)
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "nothing recorded")
  root = tmp_path / "runs"
  for seed, auroc in ((0, 0.98), (1, 0.96)):  # class 0, two of the three seeds finished
    run = root / anomaly.run_name("deep_svdd_mnist", 0, seed)
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"step": anomaly.methods("mnist")[1].steps, "auroc": auroc}) + "\n")
  for dataset in ("mnist", "fashion_mnist"):
    _write(tmp_path / f"anomaly_{dataset}.json", anomaly.evaluate(root, dataset))
  lines = tables.render_anomaly().splitlines()
  assert lines[0].startswith("| normal class | MNIST: autoencoder reconstruction error (mean ± "
                             "std, 3 seeds) | MNIST: Deep SVDD, one-class (mean ± std, 3 seeds) "
                             "| MNIST: Deep SVDD, one-class, Ruff et al. (10 seeds) |")
  assert lines[2].startswith("| 0 | not trained yet | 97.0 ± 1.4 (2 of 3 seeds) | 98.0 ± 0.7 |")
  assert lines[-1].startswith("| mean over classes | – | – | 94.8 | – |")
  _write(tmp_path / "likelihood_mnist.json", {
      "paper": "Burda et al. (3,280 passes)", "passes": 4, "rows": [
          {"row": "VAE, k = 1", "paper_nll": 86.76, "test_nll": 101.234, "test_nll_elbo": 105.0,
           "curve": [{"nll": 110.04}, {"nll": 102.0}], "command": "python -m x"},
          {"row": "IWAE, k = 5", "paper_nll": 85.54, "missing": True, "curve": [],
           "command": "python -m y"}]})
  lines = tables.render_likelihood().splitlines()
  assert lines[0].startswith("| objective | Burda et al. (3,280 passes) | genjax, 4 passes")
  assert lines[2] == ("| VAE, k = 1 | 86.76 | 101.23 | 105.00 | 110.0 → 102.0 | "
                      "`python -m x` |")
  assert lines[3] == "| IWAE, k = 5 | 85.54 | not trained yet | – | – | `python -m y` |"


def test_the_augmentation_table_renders_its_summaries(tmp_path, monkeypatch):
  monkeypatch.setattr(tables, "RUNS", tmp_path)
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "nothing recorded")
  for dataset in ("mnist", "fashion_mnist"):
    summary = augmentation.evaluate(tmp_path / "runs", dataset)  # nothing trained
    if dataset == "mnist":
      summary["rows"][0]["accuracy"] = [70.0, 72.0, 74.0]
      summary["rows"][1]["accuracy"] = [80.0]
    _write(tmp_path / f"augmentation_{dataset}.json", summary)
  lines = tables.render_augmentation().splitlines()
  assert lines[0] == ("| dataset | labelled examples | no augmentation | random translations (±2 px) "
                      "| + AC-GAN samples (half of each batch) |")
  assert lines[2] == "| MNIST | 100 | 72.0 ± 2.0 | 80.0 (1 of 3 seeds) | not trained yet |"
  assert lines[5].startswith("| Fashion-MNIST | 1000 | not trained yet |")


def test_the_reproduction_table_averages_each_finished_seed_over_the_classes(tmp_path,
                                                                              monkeypatch):
  """A seed counts once all ten classes have finished: seeds 0 and 1 here (mean over classes
  90.9 and 92.9), not seed 2 (one class)."""
  monkeypatch.setattr(tables, "RUNS", tmp_path)
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "nothing recorded")
  root = tmp_path / "runs"
  for k in range(10):
    for seed in (0, 1, 2):
      if seed == 2 and k:
        continue
      run = root / anomaly.run_name("deep_svdd_mnist", k, seed)
      run.mkdir(parents=True)
      auroc = 0.9 + 0.002 * k + 0.02 * seed
      (run / "metrics.jsonl").write_text(json.dumps({"step": anomaly.methods("mnist")[1].steps, "auroc": auroc}))
  _write(tmp_path / "anomaly_mnist.json", anomaly.evaluate(root, "mnist"))
  _write(tmp_path / "likelihood_mnist.json", {
      "paper": "Burda et al., IWAE, ICLR 2016, Table 1 (3,280 passes)", "passes": 4, "rows": [
          {"row": "IWAE, k = 5", "paper_nll": 85.54, "test_nll": 101.234, "command": "python -m y"},
          {"row": "IWAE, k = 50", "paper_nll": 84.78, "missing": True, "command": "python -m z"}]})
  lines = tables.render_reproduction().splitlines()
  (svdd,) = [x for x in lines if "Deep SVDD, one-class" in x]
  assert "| 94.8 (10 seeds) | 91.9 ± 1.4 (2 of 3 seeds) | [anomaly_mnist.json]" in svdd
  (k5,) = [x for x in lines if "IWAE, k = 5:" in x]
  assert "| 85.54 (3,280 passes) | 101.23 (1 seed, 4 passes) |" in k5 and "`python -m y`" in k5
  assert "| 84.78 (3,280 passes) | not trained yet |" in lines[lines.index(k5) + 1]
  assert all("not trained yet" in x for x in lines if "GAN" in x)

  # The GAN accuracy rows: each seed's last gan_accuracy line; SGAN's as an error.
  records = {"infogan_mnist_s0": [0.5, 0.95], "infogan_mnist_s1": [0.85], "sgan_mnist_s0": [0.99]}
  for run, accuracies in records.items():
    (tmp_path / run).mkdir()
    (tmp_path / run / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in [
        *({"source": "gan_accuracy", "step": 10, "accuracy": a} for a in accuracies),
        {"source": "train", "step": 10, "fid": 3.0}]) + "\n")
  lines = tables.render_reproduction().splitlines()
  (infogan,) = [x for x in lines if "InfoGAN" in x]
  assert ("| ≈ 95% (5% error) | 90.00% ± 7.07% (2 of 3 seeds) | "
          "[seed 0](results/infogan_mnist_s0/metrics.jsonl), "
          "[seed 1](results/infogan_mnist_s1/metrics.jsonl) | `infogan_mnist` |") in infogan
  (sgan,) = [x for x in lines if "Improved Techniques" in x]
  assert "| 0.93 ± 0.07% | 1.00% (1 of 3 seeds) | [seed 0](results/sgan_mnist_s0/" in sgan


def test_the_zoo_tables_keep_recorded_seeds_until_their_configs_settings_change(
    tmp_path, monkeypatch):
  monkeypatch.setattr(tables, "RUNS", tmp_path)
  monkeypatch.setattr(sweep, "RESULTS", tmp_path)
  monkeypatch.setattr(tables, "SAMPLES", tmp_path / "samples")
  monkeypatch.setattr(zoo, "SAMPLES", tmp_path / "samples" / "zoo")
  root = tmp_path / "runs"

  def run(family, seed, fid, last=None, accuracy=None, **extra):
    workdir = root / zoo.run_name(family, "mnist", seed)
    (workdir / "samples").mkdir(parents=True)
    (workdir / "samples" / "samples.png").write_bytes(b"png")
    last = last or zoo.spec(family, "mnist").steps
    lines = [{"step": 1000, "source": "train", "fid": 3 * fid, "kid_mean": 1.0},
             {"step": last, "source": "train", "fid": fid, "kid_mean": fid / 100, **extra}]
    if accuracy is not None:
      lines.append({"source": "gan_accuracy", "step": last, "accuracy": accuracy})
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

  run("dcgan", 0, 20.0)
  run("dcgan", 1, 30.0)
  run("sngan", 0, 50.0)
  run("acgan", 0, 5.0, label_accuracy=0.97)
  run("cgan", 0, 4.0)  # trained before the evaluator scored labels, then evaluated again
  with (root / "cgan_mnist_s0" / "metrics.jsonl").open("a") as f:
    f.write(json.dumps({"step": zoo.spec("cgan", "mnist").steps, "source": "evaluate",
                        "fid": 4.0, "label_accuracy": 0.99}) + "\n")
  run("sgan", 1, 40.0, accuracy=0.99)
  with (root / "sngan_mnist_s0" / "metrics.jsonl").open("a") as f:  # modes, evaluated later
    for step, kl in ((1000, 0.5), (zoo.spec("sngan", "mnist").steps, 0.0123)):
      f.write(json.dumps({"step": step, "source": "evaluate", "class_kl": kl}) + "\n")
  run("lsgan", 0, 80.0, last=2000)  # not at its config's last step yet
  for dataset in ("mnist", "fashion_mnist"):
    _write(tmp_path / f"zoo_{dataset}.json", zoo.evaluate(root, dataset))
  lines = {x.split(" | ")[0]: x for x in tables.render_zoo("mnist").splitlines()[2:]}
  assert lines["| DCGAN"] == (
      f"| DCGAN | `dcgan_mnist` | {zoo.spec('dcgan', 'mnist').steps} "
      "| 25.00 ± 7.07 (2 of 3 seeds) "
      "| 0.25 ± 0.07 (2 of 3 seeds) | 1.00× | 60.0 → 20.0 |  | [png](samples/zoo/dcgan_mnist_s0.png) |")
  assert ("| 2.00× | 150.0 → 50.0 | class shares' KL to the data's (10⁻³ nats): 12.30 "
          "(1 of 3 seeds) |" in lines["| SNGAN (hinge, EMA)"])
  assert "| samples classified as their label: 97.00% (1 of 3 seeds) |" in lines["| AC-GAN"]
  assert "| samples classified as their label: 99.00% (1 of 3 seeds) |" in lines[
      "| cGAN-projection (hinge)"]
  assert "| test error: 1.00% (1 of 3 seeds) | – |" in lines["| SGAN (100 labels)"]  # no seed-0 grid
  assert "| not trained yet | not trained yet | – | – |  | – |" in lines[
      "| DCGAN + least squares (LSGAN)"]
  assert (tmp_path / "samples" / "zoo" / "dcgan_mnist_s0.png").read_bytes() == b"png"

  # On another machine: the recorded seeds stay, and train skips them.
  recorded = json.loads((tmp_path / "zoo_mnist.json").read_text())
  assert zoo.evaluate(tmp_path / "elsewhere", "mnist") == recorded
  trained, scored = [], []
  monkeypatch.setattr(sweep, "train", lambda root, run, config, flags: trained.append(
      (run, config, flags)))
  monkeypatch.setattr(zoo.subprocess, "run", lambda argv, **_: scored.append(argv[-1]))
  zoo.train(tmp_path / "elsewhere", "mnist")
  assert ("dcgan_mnist_s2", "dcgan_mnist", ("--config.seed=2",)) in trained
  assert not {"dcgan_mnist_s0", "dcgan_mnist_s1", "sgan_mnist_s1"} & {r for r, _, _ in trained}
  assert len(trained) == 3 * len(zoo.FAMILIES) - 6
  assert scored == [f"--workdir={tmp_path / 'elsewhere' / r}" for r in (
      "infogan_mnist_s0", "sgan_mnist_s0", "infogan_mnist_s1", "infogan_mnist_s2", "sgan_mnist_s2")]

  # Configs whose settings changed (DCGAN's step count, AC-GAN's generator averaging): their
  # recorded seeds drop out; bookkeeping (how often it evaluates) leaves them.
  committed = zoo._config  # pylint: disable=protected-access

  def changed(family, dataset):
    config = committed(family, dataset)
    config.num_steps += 1000 if family == "dcgan" else 0
    config.ema_decay = 0.999 if family == "acgan" else config.ema_decay
    config.eval.every = 500 if family == "sngan" else config.eval.every
    return config
  monkeypatch.setattr(zoo, "_config", changed)
  assert zoo.spec("acgan", "mnist").settings["ema_decay"] == 0.999
  _write(tmp_path / "zoo_mnist.json", zoo.evaluate(tmp_path / "elsewhere", "mnist"))
  rows = {r["family"]: r for r in json.loads((tmp_path / "zoo_mnist.json").read_text())["rows"]}
  assert rows["dcgan"]["per_seed"] == rows["acgan"]["per_seed"] == {}
  assert rows["dcgan"]["steps"] == committed("dcgan", "mnist").num_steps + 1000
  assert list(rows["sngan"]["per_seed"]) == ["0"]
  # ... and so does the grid its seed 0 left in samples/zoo
  assert tables.render_zoo("mnist").splitlines()[2].endswith("| – |  | – |")


def test_the_zoo_refuses_a_run_trained_with_other_settings_than_its_config(tmp_path,
                                                                            monkeypatch):
  """A workdir's newest checkpoint names the config it was trained with: a run of other
  settings (a config changed since, a seed's workdir under another seed's name) stops
  ``evaluate`` and ``train`` in one line, before anything is written or resumed."""
  monkeypatch.setattr(sweep, "RESULTS", tmp_path)
  root = tmp_path / "runs"

  def trained_as(run, step, **changes):
    config = zoo._config("sngan", "mnist")  # pylint: disable=protected-access
    for key, value in changes.items():
      node, *path = key.split(".")[::-1]
      section = config
      for name in reversed(path):
        section = section[name]
      section[node] = value
    tree = json.loads(config.to_json())
    tree.pop("tune_malloc")  # a key the run's genjax did not have yet: not compared
    with checkpoint.Checkpointer(str(root / run / "checkpoints"), asynchronous=False) as ckpt:
      ckpt.save(step, {"step": np.zeros((), np.int32)}, {"config": json.dumps(tree)})

  # bookkeeping and the recorded metrics may differ; only the newest checkpoint counts
  trained_as("sngan_mnist_s1", 100, ema_decay=0.0)
  trained_as("sngan_mnist_s1", 200, seed=1, **{"eval.every": 500, "eval.metrics": "fid,kid",
                                                "log_every": 7})
  config = zoo.spec("sngan", "mnist").committed
  zoo.check_trained(root / "sngan_mnist_s1", config, 1)
  zoo.check_trained(root / "sngan_mnist_s2", config, 2)  # not started: nothing to check
  # a save under way (an unfinished step's temporary directory) is not the newest checkpoint
  (root / "sngan_mnist_s1" / "checkpoints" / "300.orbax-checkpoint-tmp-0").mkdir()
  zoo.check_trained(root / "sngan_mnist_s1", config, 1)
  trained_as("sngan_mnist_s0", 300, seed=0, ema_decay=0.0, **{"optimizer.learning_rate": 1.0})
  trained = []
  monkeypatch.setattr(sweep, "train", lambda root, run, *_: trained.append(run))
  for action in ("evaluate", "train"):
    with pytest.raises(SystemExit) as info:
      sweep.main([action, f"--root={root}", "--datasets=mnist"], doc="zoo", experiment="zoo",
                 train_dataset=zoo.train, evaluate_dataset=zoo.evaluate)
    assert str(info.value) == (
        f"{root / 'sngan_mnist_s0'} was trained with ema_decay=0.0 (expected 0.999), "
        f"optimizer.learning_rate=1.0 (expected 0.0002); move it aside (or delete it) to train "
        f"sngan_mnist_s0 afresh")
  assert not (tmp_path / "zoo_mnist.json").exists()
  assert trained == ["dcgan_mnist_s0", "lsgan_mnist_s0", "hinge_mnist_s0", "wgan_mnist_s0",
                     "wgan_gp_mnist_s0"]  # the families before SNGAN: it resumes nothing
  with pytest.raises(SystemExit, match="was trained with seed=1 \\(expected 2\\)"):
    zoo.check_trained(root / "sngan_mnist_s1", config, 2)
  # a newest checkpoint whose metadata cannot be read: one line, which says what to do
  (root / "sngan_mnist_s1" / "checkpoints" / "200" / "meta" / "metadata").write_text("{torn")
  with pytest.raises(SystemExit) as info:
    zoo.check_trained(root / "sngan_mnist_s1", config, 1)
  assert "the metadata of checkpoint step 200" in str(info.value)
  assert "resume_skip_corrupt" in str(info.value) and "\n" not in str(info.value)


def test_evaluating_where_no_run_is_rewrites_each_committed_summary_unchanged(tmp_path):
  """The committed summaries are the records: where none of the runs are (another machine),
  evaluate keeps every recorded row, so it writes each summary byte for byte as committed. A
  row it dropped, or a recorded command the code no longer writes, fails here."""
  for module, experiment, datasets in ((zoo, "zoo", sweep.DATASETS),
                                       (anomaly, "anomaly", sweep.DATASETS),
                                       (augmentation, "augmentation", sweep.DATASETS),
                                       (likelihood, "likelihood", ("mnist",))):
    for dataset in datasets:
      assert sweep.summary_text(module.evaluate(tmp_path, dataset)) == (
          sweep.RESULTS / f"{experiment}_{dataset}.json").read_text(), (experiment, dataset)
  assert sweep.summary_text(fanogan_residuals.analyse(tmp_path, "mnist")) == (
      sweep.RESULTS / "fanogan_residuals_mnist.json").read_text()


def test_a_sweep_refuses_a_root_that_is_not_a_directory_and_writes_nothing(
    tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")
  (tmp_path / "results").mkdir()
  a_file = tmp_path / "runs.txt"
  a_file.write_text("")
  never = lambda *_: pytest.fail("ran with a bad root")  # pylint: disable=unnecessary-lambda-assignment
  # a mistyped root to evaluate would rewrite the summaries from their records alone
  for argv in (["evaluate", f"--root={tmp_path / 'typo'}"], ["train", f"--root={a_file}"],
               ["evaluate", f"--root={a_file}"]):
    with pytest.raises(SystemExit) as info:
      sweep.main(argv, doc="zoo", experiment="zoo", train_dataset=never, evaluate_dataset=never)
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "is not a directory: it holds one workdir per run")
  with pytest.raises(SystemExit) as info:
    fanogan_residuals.main([f"--root={tmp_path / 'typo'}"])
  assert info.value.code == 2 and "is not a directory" in capsys.readouterr().err
  # the denoising table and its grid need every run: one line naming the missing ones
  (tmp_path / "dae_mnist_gaussian_0.1" / "checkpoints").mkdir(parents=True)
  png = tmp_path / "results" / "grid.png"
  with pytest.raises(SystemExit) as info:
    denoising.evaluate_dataset(tmp_path, "mnist", png)
  message = str(info.value)
  assert message.startswith("no dae_mnist_gaussian_0.2, ") and "\n" not in message
  assert "dae_mnist_gaussian_0.1" not in message and "--datasets=mnist" in message
  assert not list((tmp_path / "results").iterdir())
