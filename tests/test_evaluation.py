"""Evaluation plumbing: sample generation, sharded extraction, cached real statistics, records.

The extractor here is a fixed random projection (the real ones are tested in test_features.py),
so these tests check what the evaluator does with features, not the features themselves.
"""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from genjax import config as config_lib
from genjax import data
from genjax import evaluation
from genjax import paths
from genjax import runs
from genjax import train
from genjax.errors import ConfigError
from genjax.metrics import statistics
from tests.conftest import tiny_config
from tests.test_train import read_events


def projection_extractor(dim=16):
  w = jax.random.normal(jax.random.PRNGKey(42), (32 * 32, dim))

  def fn(x01):
    assert float(jnp.min(x01)) >= 0.0 and float(jnp.max(x01)) <= 1.0
    f = x01.mean(-1).reshape(x01.shape[0], -1) @ w
    return {"features": f, "logits": f[:, :10]}
  return evaluation.Extractor("projection:test", fn, "fixed")


def make(family, tmp_path, **overrides):
  c = tiny_config(family, **{"eval.cache_dir": str(tmp_path / "cache"), "eval.num_samples": 64,
                             "eval.num_real": 128, "eval.batch_size": 24,
                             "eval.metrics": "fid,kid,is,modes,pr,dc", "dataset.split": "train",
                             "eval.split": "test", **overrides})
  config_lib.validate(c)
  method = runs.build_method(c)
  return c, method, method.init(jax.random.PRNGKey(0))


@pytest.mark.parametrize("family", ["dcgan", "vae", "ae"])
def test_evaluator_reports_every_metric_with_its_counts(tmp_path, monkeypatch, family):
  c, method, state = make(family, tmp_path)
  ev = evaluation.Evaluator(c, method, projection_extractor())
  out = ev(state, jax.random.PRNGKey(1))
  assert out["extractor"] == "projection:test" and out["num_samples"] == 64
  assert out["num_real"] == 128 and out["split"] == "test"
  r = ev.real_features()["features"]
  f = ev.fake_features(state, jax.random.PRNGKey(1), 64)["features"]
  assert out["fid"] == pytest.approx(statistics.fid(r, f), rel=1e-9)
  # Each metric is that of the real split's features and the samples', the real set first.
  # Shown on samples whose features overlap the real ones (an untrained model's are far away,
  # where precision, recall, density and coverage are all 0 whatever the order).
  noise = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
  near = r[::2] + 0.3 * r.std() * noise
  monkeypatch.setattr(ev, "fake_features", lambda *_: {"features": near, "logits": near[:, :10]})
  out = ev(state, jax.random.PRNGKey(1))
  assert out["fid"] == pytest.approx(statistics.fid(r, near), rel=1e-9)
  assert (out["kid_mean"], out["kid_std"]) == pytest.approx(
      statistics.kid(r, near, subset_size=64, seed=c.seed), rel=1e-9)
  probs = scipy.special.softmax(near[:, :10].astype(np.float64), axis=-1)
  assert (out["is_mean"], out["is_std"]) == pytest.approx(statistics.inception_score(probs),
                                                          rel=1e-5)
  assert (out["class_kl"], out["class_fractions"]) == statistics.class_balance(
      ev.real_features()["logits"], near[:, :10])
  assert out["class_kl"] > 0 and sum(out["class_fractions"]) == pytest.approx(1.0)
  assert (out["precision"], out["recall"]) == statistics.precision_recall(r, near)
  assert (out["density"], out["coverage"]) == statistics.density_coverage(r, near)
  assert statistics.precision_recall(r, near) != statistics.precision_recall(near, r)
  assert statistics.density_coverage(r, near) != statistics.density_coverage(near, r)
  # The real features are cached on disk and reused.
  assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
  again = evaluation.Evaluator(c, method, projection_extractor())
  np.testing.assert_array_equal(again.real_features()["features"],
                                ev.real_features()["features"])


def test_real_against_itself_scores_perfectly(tmp_path):
  c, method, _ = make("ae", tmp_path)
  ev = evaluation.Evaluator(c, method, projection_extractor())
  real = ev.real_features()["features"]
  assert real.shape == (128, 16)
  assert statistics.fid(real, real) == pytest.approx(0.0, abs=1e-6)
  # The batch is padded to a multiple of the device count (24 -> 24 on 8 devices), and the last
  # of 128 / 24 batches with copies of its last image; the padding never reaches the results:
  # the features are those of the 128 images, in order, each once.
  assert ev.batch % jax.device_count() == 0 and ev.batch >= 24 and 128 % ev.batch
  images = data.load_config(c.dataset, "test")["image"][:128]
  lo, hi = method.value_range
  unit = jnp.clip((method.images(images) - lo) / (hi - lo), 0.0, 1.0)
  np.testing.assert_allclose(real, projection_extractor().fn(unit)["features"], rtol=1e-5,
                             atol=1e-5)


def test_rank_deficient_fid_is_refused_at_start_up_unless_allowed(tmp_path):
  # 16 samples of 16-d features: rank 15 at most, refused when the evaluator is built
  c, method, state = make("dcgan", tmp_path, **{"eval.num_samples": 16, "eval.metrics": "fid"})
  with pytest.raises(ConfigError, match=r"FID from 16 samples of 16-d projection:test features "
                                        r"has a rank-deficient covariance"):
    evaluation.Evaluator(c, method, projection_extractor())
  c.eval.num_samples = 17
  evaluation.Evaluator(c, method, projection_extractor())
  c.eval.num_samples, c.eval.allow_rank_deficient = 8, True
  ev = evaluation.Evaluator(c, method, projection_extractor())
  out = ev(state, jax.random.PRNGKey(0))
  assert out["fid"] == pytest.approx(statistics.fid(
      ev.real_features()["features"], ev.fake_features(state, jax.random.PRNGKey(0), 8)[
          "features"], allow_rank_deficient=True), rel=1e-9)


def test_a_rank_deficient_fid_stops_training_before_the_first_step(tmp_path, monkeypatch):
  monkeypatch.setattr(evaluation, "make_extractor", lambda *_: projection_extractor())
  c = tiny_config("dcgan", **{"eval.every": 2, "eval.num_samples": 16, "eval.num_real": 64,
                              "eval.cache_dir": str(tmp_path / "cache"), "eval.metrics": "fid"})
  with pytest.raises(ConfigError, match="rank-deficient"):
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert not list((tmp_path / "run" / "checkpoints").glob("*"))


def test_a_feature_cache_that_cannot_be_written_warns_and_a_compilation_cache_is_one_line(
    tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(evaluation, "make_extractor", lambda *_: projection_extractor())
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  c = tiny_config("dcgan", num_steps=2, **{
      "eval.every": 2, "eval.num_samples": 16, "eval.num_real": 16, "eval.metrics": "fid",
      "eval.allow_rank_deficient": True, "eval.cache_dir": str(a_file / "cache")})
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert "cannot cache the real split's features in" in caplog.text  # and the run finished
  assert "fid" in json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
  c = tiny_config("dcgan", compilation_cache_dir=str(a_file / "xla"))
  with pytest.raises(ConfigError, match=r"^cannot make config.compilation_cache_dir .*a_file/xla "
                                        r"\(Not a directory\): give a writable folder, or ''"):
    train.train_and_evaluate(c, str(tmp_path / "run2"))
  assert not (tmp_path / "run2").exists()


def test_in_loop_evaluation_writes_jsonl_and_tensorboard(tmp_path, monkeypatch):
  monkeypatch.setattr(evaluation, "make_extractor", lambda *_: projection_extractor())
  c = tiny_config("dcgan", **{"eval.every": 2, "eval.num_samples": 32, "eval.num_real": 64,
                              "eval.cache_dir": str(tmp_path / "cache"),
                              "eval.metrics": "fid,kid", "eval.allow_rank_deficient": False,
                              "eval.split": "test", "optimizer.learning_rate": 0.01})
  result = train.train_and_evaluate(c, str(tmp_path / "run"))
  lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [2, 4]
  assert all(l["extractor"] == "projection:test" and l["num_samples"] == 32 for l in lines)
  # The last line is the evaluation of the final state, with the run's evaluation key.
  ev = evaluation.Evaluator(c, runs.build_method(c), projection_extractor())
  final = ev(result.state, jax.random.fold_in(jax.random.PRNGKey(c.seed), 0x7FFFFFFE))
  assert (lines[-1]["fid"], lines[-1]["kid_mean"]) == pytest.approx(
      (final["fid"], final["kid_mean"]), rel=1e-6)
  assert lines[0]["fid"] != pytest.approx(lines[-1]["fid"], rel=1e-3)  # the model moved (lr 0.01)
  scalars, _ = read_events(tmp_path / "run")  # and TensorBoard has each evaluation, by extractor
  assert {k: v for k, v in scalars.items() if k.startswith("eval_")} == {
      "eval_projection/fid": [2, 4], "eval_projection/kid_mean": [2, 4],
      "eval_projection/kid_std": [2, 4]}


@pytest.mark.parametrize("key,value,match", [
    ("eval.metrics", "fid,lpips", "unknown config.eval.metrics entry 'lpips'"),
    ("eval.extractor", "vgg", "config.eval.extractor must be one of classifier, inception"),
    ("eval.num_samples", 1, "config.eval.num_samples must be >= 2"),
    ("eval.metrics", " , ", "^config.eval.every=3 evaluates, and config.eval.metrics names no "
                            "metric: name some of fid, kid, is, modes, pr, dc, auroc, nll, or "
                            "set eval.every=0$"),
])
def test_eval_config_errors(key, value, match):
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(tiny_config("dcgan", **{key: value, "eval.every": 3}))


def test_inception_without_weights_says_where_to_put_them(tmp_path):
  c = tiny_config("dcgan", **{"eval.extractor": "inception"})
  with pytest.raises(ConfigError, match="pt_inception-2015-12-05-6726825d.pth"):
    evaluation.make_extractor(c.eval, c.dataset.name)


def test_classifier_dir_overrides_the_checkout_layout_and_an_installed_package_names_it(
    tmp_path, monkeypatch):
  """The domain classifier of a dataset is $GENJAX_CLASSIFIER_DIR/<dataset>, whose default
  (the checkout's experiments/classifiers) is the repository's layout: outside a checkout there
  is none, and the error is one line naming what to set."""
  loaded = []
  monkeypatch.setattr(runs, "load_classifier", lambda path, **_: loaded.append(path))
  ec = tiny_config("dcgan").eval
  monkeypatch.delenv("GENJAX_CLASSIFIER_DIR", raising=False)
  evaluation.make_extractor(ec, "mnist")
  assert loaded == [str(paths.CHECKOUT / "experiments" / "classifiers" / "mnist")]
  (tmp_path / "mnist").mkdir()
  monkeypatch.setenv("GENJAX_CLASSIFIER_DIR", str(tmp_path))
  assert evaluation.make_extractor(ec, "mnist").name == "classifier:mnist"
  assert loaded[1:] == [str(tmp_path / "mnist")]

  monkeypatch.delenv("GENJAX_CLASSIFIER_DIR")
  monkeypatch.setattr(paths, "CHECKOUT", None)  # an installed package
  with pytest.raises(ConfigError) as e:
    evaluation.make_extractor(ec, "mnist")
  assert str(e.value) == (
      "no domain classifier for mnist (no default outside a checkout): set "
      "--config.eval.weights=RUN or GENJAX_CLASSIFIER_DIR=DIR (DIR/mnist a classifier run), or "
      "train one with experiments/configs/classifier_mnist.py (see README)")
  monkeypatch.setenv("GENJAX_CLASSIFIER_DIR", str(tmp_path / "elsewhere"))
  with pytest.raises(ConfigError, match=f"^no domain classifier at {tmp_path}/elsewhere/mnist: "):
    evaluation.make_extractor(ec, "mnist")


def test_evaluate_run_scores_a_checkpoint_with_its_saved_config(tmp_path, monkeypatch):
  backends = []  # the conv kernels the networks are built on: the run's config.conv_backend

  def extractor(ec, ds, conv_backend):
    backends.append(conv_backend)
    return projection_extractor()

  monkeypatch.setattr(evaluation, "make_extractor", extractor)
  # The run itself scores FID too, every 2 steps, on the samples the command scores below.
  c = tiny_config("dcgan", ema_decay=0.5, **{
      "eval.every": 2, "eval.metrics": "fid,kid,is", "eval.num_samples": 40,
      "eval.split": "test", "eval.cache_dir": str(tmp_path / "cache"),
      "optimizer.learning_rate": 0.01})
  train.train_and_evaluate(c, str(tmp_path / "run"))
  backends.clear()
  out = evaluation.evaluate_run(str(tmp_path / "run"), step=2, metrics="kid,is", num_samples=40,
                                split="test", cache_dir=str(tmp_path / "cache"))
  assert [b.name for b in backends] == ["onednn"]
  assert out["step"] == 2 and out["num_samples"] == 40 and "fid" not in out
  lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [(l["source"], l["step"]) for l in lines] == [("train", 2), ("train", 4),
                                                        ("evaluate", 2)]
  # The checkpoint of step 2 scores what the run scored at step 2, not what it scored at 4.
  for key in ("kid_mean", "kid_std", "is_mean", "is_std"):
    assert out[key] == pytest.approx(lines[0][key], rel=1e-9), key
  assert lines[0]["kid_mean"] != pytest.approx(lines[1]["kid_mean"], rel=1e-3)
  # no metric to compute: one line, and the run's record is untouched (it was appended a line
  # without scores, then failed)
  before = (tmp_path / "run" / "metrics.jsonl").read_text()
  with pytest.raises(ConfigError, match="^nothing to evaluate: --metrics names no metric; "):
    evaluation.evaluate_run(str(tmp_path / "run"), metrics="")
  assert (tmp_path / "run" / "metrics.jsonl").read_text() == before
  # the messages name the command's flags (genjax.cli.evaluate passes them all, None where not
  # given), not the config keys they set
  flags = dict.fromkeys(("metrics", "num_samples", "extractor", "weights", "split"))
  monkeypatch.undo()
  with pytest.raises(ConfigError, match=r"^the inception extractor needs the weight file: set "
                     r"--weights=/path/to/pt_inception-2015-12-05-6726825d\.pth "):
    evaluation.evaluate_run(str(tmp_path / "run"), **{**flags, "extractor": "inception"})
  with pytest.raises(ConfigError, match=r"^--num_samples must be >= 2, got 1$"):
    evaluation.evaluate_run(str(tmp_path / "run"), **{**flags, "num_samples": 1})
  assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("tool", ["genjax.cli.evaluate", "genjax.cli.gan_accuracy"])
def test_evaluation_commands_without_checkpoint_fail_in_one_line(tmp_path, tool):
  import subprocess, sys, os  # pylint: disable=g-import-not-at-top,g-multiple-import
  from tests.conftest import REPO  # pylint: disable=g-import-not-at-top
  out = subprocess.run([sys.executable, "-m", tool, f"--workdir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert out.returncode == 2
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("genjax: error: no checkpoint") and str(tmp_path) in last
