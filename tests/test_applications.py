"""The application experiments' building blocks: the methods' features for linear probes
(experiments/feature_learning.py) and the denoising table (experiments/denoising.py)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image
from skimage import metrics as skmetrics

from experiments import denoising
from experiments import feature_learning
from genjax import runs
from genjax import train
from genjax.config import base_config
from genjax.errors import ConfigError
from tests.conftest import tiny_config


def _state(c):
  method = runs.build_method(c)
  return method, jax.jit(method.init)(jax.random.PRNGKey(0))


def _images(n=6):
  return np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


def test_an_autoencoders_features_are_its_code_and_a_vaes_its_posterior_mean():
  for family in ("ae", "vae"):
    method, state = _state(tiny_config(family))
    feats = method.features(state, _images())
    model = method.sampler_net(state)
    z = model.encode(method.images(_images()))
    code = z[0] if family == "vae" else z
    assert feats.shape == (6, 8)
    np.testing.assert_allclose(np.asarray(feats), np.asarray(code), rtol=1e-6)


def test_a_dcgan_discriminator_gives_its_last_feature_map_beside_the_same_logit():
  method, state = _state(tiny_config("dcgan"))
  x = method.images(_images())
  d = method.net("discriminator", state.params["discriminator"], state.buffers["discriminator"],
                 train=False)
  out = d(x)
  # the logit is the body's output conv over the returned features, as before they were returned
  np.testing.assert_array_equal(np.asarray(out["logit"]), np.asarray(d.body(x)[:, 0]))
  assert out["features"].shape == (6, 4 * 4 * 32)  # ndf 8, doubled twice to the 4x4 map
  np.testing.assert_array_equal(np.asarray(method.features(state, _images())),
                                np.asarray(out["features"]))


def test_a_discriminator_that_needs_labels_has_no_probe_features():
  method, state = _state(tiny_config("cgan"))
  with pytest.raises(ConfigError, match="does not give features of an image alone"):
    method.features(state, _images())
  c = base_config("classifier")
  c.dataset.name, c.dataset.image_size = "synthetic", 32
  method, state = _state(c)
  with pytest.raises(ConfigError, match="has no feature extractor"):
    method.features(state, _images())


def test_the_feature_probe_keeps_the_c_with_the_best_validation_accuracy():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 10, 400)
  x = (np.eye(10)[y] * 3 + rng.normal(size=(400, 10))).astype(np.float32)
  result = feature_learning.probe(x[:200], y[:200], x[200:300], y[200:300], x[300:], y[300:],
                                  c_grid=(1e-4, 1.0))
  best = max(result["validation_accuracy"].items(), key=lambda kv: kv[1])[0]
  assert str(result["C"]) == best
  assert result["test_accuracy"] > 0.8  # 10 well-separated classes, the chance level is 0.1


def test_a_probe_sweep_on_another_machine_keeps_recorded_rows_and_trains_the_rest(
    tmp_path, monkeypatch):
  """The committed summary is the record: evaluate keeps a scored row whose run is not here
  (unless its command changed), scores the runs that are, and train trains only the rest."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")
  (tmp_path / "results").mkdir()
  rng = np.random.default_rng(0)
  labels = np.arange(120) % 10
  monkeypatch.setattr(feature_learning, "_split", lambda dataset, split: (
      rng.integers(0, 256, (120, 28, 28, 1), np.uint8), labels))
  monkeypatch.setattr(feature_learning, "NUM_TRAIN", 100)
  monkeypatch.setattr(feature_learning, "_features", lambda workdir, images: (
      images.reshape(len(images), -1)[:, :20].astype(np.float32), None if workdir is None else 7))
  record = feature_learning.evaluate_dataset(tmp_path, "mnist")
  assert [r.get("missing", False) for r in record["rows"]] == [False] + [True] * 5
  by_label = {r["representation"]: r for r in record["rows"]}
  by_label["AE code"].update(test_accuracy=0.5, step=3, dim=32)
  by_label["VAE posterior mean"].update(test_accuracy=0.4, step=3, dim=16, command="older")
  (tmp_path / "results" / "feature_learning_mnist.json").write_text(json.dumps(record))
  (tmp_path / "dcgan_mnist" / "checkpoints").mkdir(parents=True)

  rows = {r["representation"]: r for r in feature_learning.evaluate_dataset(tmp_path, "mnist")[
      "rows"]}
  assert rows["AE code"] == by_label["AE code"]  # recorded, its run elsewhere
  assert rows["VAE posterior mean"]["missing"]  # recorded by another command: not kept
  assert rows["DCGAN discriminator"]["step"] == 7 and "test_accuracy" in rows["DCGAN discriminator"]
  assert rows["SNGAN discriminator"]["missing"] and rows["raw pixels"]["dim"] == 20

  trained = []
  monkeypatch.setattr(sweep, "train", lambda root, run, config, flags=(): trained.append(run))
  feature_learning.train(tmp_path, "mnist")
  assert trained == ["dae_mnist_gaussian_0.3", "vae_mnist", "dcgan_mnist", "sngan_mnist"]


def test_the_denoising_table_scores_the_dae_and_its_peers_on_the_same_noisy_images(
    tmp_path, monkeypatch):
  monkeypatch.setattr(denoising, "LEVELS", {"gaussian": (0.3,), "salt_pepper": (0.2,)})
  for kind, level, run in denoising.runs("mnist"):
    c = tiny_config("ae", num_steps=2, **{"dataset.name": "mnist", "method.corruption": kind,
                                          "method.corruption_level": level})
    train.train_and_evaluate(c, str(tmp_path / run))
  png = tmp_path / "grid.png"
  summary = denoising.evaluate_dataset(tmp_path, "mnist", png, num_images=10, num_tuning=6)
  assert [(r["kind"], r["level"], r["step"]) for r in summary["rows"]] == [
      ("gaussian", 0.3, 2), ("salt_pepper", 0.2, 2)]
  peers = denoising._peers()  # pylint: disable=protected-access
  clean = denoising._images("mnist", "test", 10)[:, 2:30, 2:30, 0]  # pylint: disable=protected-access
  for index, row in enumerate(summary["rows"]):
    methods = row["methods"]
    assert set(methods) == {"noisy input", "DAE", *peers}
    # the scores are scikit-image's PSNR and SSIM on the 28x28 crop, averaged over images
    noisy = denoising._noisy(denoising._images("mnist", "test", 10), row["kind"], row["level"],  # pylint: disable=protected-access
                             seed=index)[:, 2:30, 2:30, 0]
    assert methods["noisy input"]["psnr"] == pytest.approx(np.mean(
        [skmetrics.peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(clean, noisy)]),
        rel=1e-5)
    assert methods["noisy input"]["ssim"] == pytest.approx(np.mean(
        [skmetrics.structural_similarity(a, b, data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
         for a, b in zip(clean, noisy)]), abs=1e-4)
    for peer, (_, grid) in peers.items():
      assert methods[peer]["param"] in grid
    # tuned classical denoisers do improve on the noisy images
    assert methods["non-local means"]["psnr"] > methods["noisy input"]["psnr"]
    assert methods["median"]["psnr"] > methods["noisy input"]["psnr"]
  # one row per test image; per (kind, level): clean, noisy, DAE and the 4 peers, 28x28 + 2
  assert Image.open(png).size == (14 * 30 + 2, 8 * 30 + 2)
