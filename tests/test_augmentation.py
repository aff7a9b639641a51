"""Data augmentation (issue 17 §3): few-label training sets (``dataset.per_class``) and a
classifier whose batches are partly drawn by a frozen class-conditional generator."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sweep
from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import runs
from genjax import train
from genjax.config import base_config
from genjax.errors import ConfigError
from genjax.methods import classification
from tests.conftest import tiny_config
from tests.conftest import tiny_run


def tiny_classifier(**overrides):
  c = base_config("classifier")
  c.dataset.name = "synthetic"
  return tiny_run(c, **overrides)


def test_per_class_keeps_that_many_examples_of_every_class_chosen_by_the_subset_seed():
  c = tiny_classifier(**{"dataset.per_class": 3})
  config_lib.validate(c)
  few = data.load_config(c.dataset)
  full = data.load("synthetic", "train")
  assert np.bincount(few["label"]).tolist() == [3] * 10
  # each kept example is one of the split's, image and label together
  index = {full["image"][i].tobytes(): full["label"][i] for i in range(len(full["label"]))}
  assert all(index[im.tobytes()] == lab for im, lab in zip(few["image"], few["label"]))
  again = data.load_config(c.dataset)
  np.testing.assert_array_equal(few["image"], again["image"])
  c.dataset.subset_seed = 1
  assert not np.array_equal(data.load_config(c.dataset)["image"], few["image"])
  # evaluation splits stay whole
  assert len(data.load_config(c.dataset, "test")["label"]) == len(data.load("synthetic", "test")["label"])


@pytest.mark.parametrize("overrides,message", [
    ({"dataset.per_class": -1}, "per_class must be an integer >= 0, got -1"),
    ({"dataset.name": "celeb_a", "dataset.per_class": 10}, "'celeb_a' has no labels"),
    ({"method.generated_fraction": 1.0, "frozen.generator": "runs/acgan"},
     r"generated_fraction must be in \[0, 1\), got 1.0"),
    ({"method.generated_fraction": 0.5}, "needs a class-conditional generator for "
                                         "method.generated_fraction"),
])
def test_bad_augmentation_configs_are_one_line(overrides, message):
  with pytest.raises(ConfigError, match=message) as e:
    config_lib.validate(tiny_classifier(**overrides))
  assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def acgan(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("acgan") / "run"
  train.train_and_evaluate(tiny_config("acgan", **{"num_steps": 2}), str(workdir))
  return workdir


def test_generated_examples_fill_the_end_of_each_batch_with_their_labels(acgan):
  c = tiny_classifier(**{"method.generated_fraction": 0.25, "frozen.generator": str(acgan),
                         "dataset.image_size": 32, "method.translate": 0})
  config_lib.validate(c)
  method = runs.build_method(c)
  weights = method.attach_frozen(frozen.for_config(c, method))
  state = method.init(jax.random.PRNGKey(0))
  # the generator's images for a key, mapped from its [-1, 1] to the classifier's range
  images, labels = method.generated(weights, jax.random.PRNGKey(5), 4)
  source = method.frozen["generator"].method
  latent = source.sample_latent(jax.random.PRNGKey(5), 4, None)
  raw = source.generate(method.frozen["generator"].module, latent)
  lo, hi = method.value_range
  np.testing.assert_allclose(images, (np.clip(raw, -1, 1) + 1) / 2 * (hi - lo) + lo, atol=1e-5)
  np.testing.assert_array_equal(labels, latent["labels"])
  batch = {"image": jnp.asarray(data.load("synthetic", "train")["image"][:16]),
           "label": jnp.asarray(data.load("synthetic", "train")["label"][:16])}
  new_state, metrics = jax.jit(method.step)(state, batch, weights)
  assert np.isfinite(float(metrics["loss"])) and int(new_state.step) == 1


def test_sampling_and_evaluation_hooks_are_given_the_frozen_weights(acgan, monkeypatch):
  """The evaluator passes the attached networks' weights, placed on its mesh, as the hooks'
  last argument (as the launcher does for step and sample_grids): a hook sees exactly them."""
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  c = tiny_classifier(**{"method.generated_fraction": 0.5, "frozen.generator": str(acgan),
                         "dataset.image_size": 32, "eval.metrics": "auroc",
                         "dataset.classes": (0,)})
  method = runs.build_method(c)
  weights = method.attach_frozen(frozen.for_config(c, method))
  total = sum(float(np.sum(x)) for x in jax.tree.leaves(weights))

  def anomaly_scores(state, images, frozen=None):
    del state
    weight_sum = sum(jnp.sum(x) for x in jax.tree.leaves(frozen))
    return jnp.full((images.shape[0],), weight_sum) + images[:, 0, 0, 0]
  monkeypatch.setattr(method, "anomaly_scores", anomaly_scores)
  evaluator = evaluation.Evaluator(c, method)
  state = method.init(jax.random.PRNGKey(0))
  images = jnp.zeros((evaluator.batch, 32, 32, 1), jnp.uint8)
  np.testing.assert_allclose(evaluator._anomaly_scores(state, images, *evaluator._frozen),  # pylint: disable=protected-access
                             total, rtol=1e-4)
  assert 0.0 <= evaluator(state, jax.random.PRNGKey(1))["auroc"] <= 1.0
  grids = jax.jit(method.sample_grids)(state, {"image": images[:4]}, jax.random.PRNGKey(2),
                                       weights)
  assert grids["inputs"].shape[-3:] == (32, 32, 1)


def test_a_generator_of_another_class_count_is_refused_at_start_up(acgan):
  c = tiny_classifier(**{"method.generated_fraction": 0.5, "frozen.generator": str(acgan),
                         "dataset.image_size": 32})
  method = runs.build_method(c)
  other = types.SimpleNamespace(method=types.SimpleNamespace(cond_classes=3))
  with pytest.raises(ConfigError, match="config.frozen.generator draws 3 classes, this "
                                        "classifier has 10"):
    method.attach_frozen({"generator": other})
  assert method.frozen == {}


def test_a_classifier_trains_on_generated_examples_and_reports_accuracy(acgan, tmp_path):
  c = tiny_classifier(**{"method.generated_fraction": 0.5, "frozen.generator": str(acgan),
                         "dataset.image_size": 32, "dataset.per_class": 2})
  train.train_and_evaluate(c, str(tmp_path / "clf"))
  method, state, _ = runs.restore_run(tmp_path / "clf")
  test = data.load("synthetic", "test")
  acc = classification.accuracy(method, state, test["image"], test["label"])
  assert 0.0 <= acc <= 1.0


def test_the_sweep_names_its_generator_and_marks_unfinished_runs(tmp_path):
  from experiments import augmentation  # pylint: disable=g-import-not-at-top
  flags = augmentation.classifier_overrides(tmp_path, "mnist", 100, "generated", 2)
  assert "--config.dataset.per_class=10" in flags and "--config.seed=2" in flags
  assert f"--config.frozen.generator={tmp_path / 'acgan_mnist_n100'}" in flags
  assert "--config.dataset.subset_seed=0" in augmentation.subset(1000)
  summary = augmentation.evaluate(tmp_path, "mnist")  # no runs here: the committed seeds stay
  committed = json.loads((sweep.RESULTS / "augmentation_mnist.json").read_text())
  assert [r["accuracy"] for r in summary["rows"]] == [r["accuracy"] for r in committed["rows"]]


def test_a_sweep_on_another_machine_adds_seeds_and_skips_recorded_ones(tmp_path, monkeypatch):
  """The committed summary is the record: evaluate keeps a recorded seed whose run is not
  here, adds the finished runs that are, and train trains only what is not recorded."""
  from experiments import augmentation  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")
  (tmp_path / "results").mkdir()
  assert all(r["accuracy"] == [] for r in augmentation.evaluate(tmp_path, "mnist")["rows"])
  record = augmentation.evaluate(tmp_path, "mnist")
  record["rows"][0].update(seeds=[0, 2], accuracy=[80.0, 90.0])
  (tmp_path / "results" / "augmentation_mnist.json").write_text(json.dumps(record))
  finished = {"classifier_mnist_n100_alone_s1": 0.7, "classifier_mnist_n100_alone_s2": 0.6}
  monkeypatch.setattr(augmentation, "test_accuracy", lambda w: finished.get(w.name))
  row = augmentation.evaluate(tmp_path, "mnist")["rows"][0]
  assert row["seeds"] == [0, 1, 2] and row["accuracy"] == [80.0, 70.0, 60.0]  # runs win
  assert row["mean"] == pytest.approx(70.0) and row["std"] == pytest.approx(10.0)

  trained = []
  monkeypatch.setattr(sweep, "train", lambda root, run, config, flags=(): trained.append(run))
  augmentation.train(tmp_path, "mnist")
  assert "classifier_mnist_n100_alone_s0" not in trained  # recorded, its run elsewhere
  assert "classifier_mnist_n100_alone_s1" in trained and len(trained) == 2 + 16
  (tmp_path / "classifier_mnist_n100_alone_s2").mkdir()  # a recorded run that is here resumes
  trained.clear()
  augmentation.train(tmp_path, "mnist")
  assert "classifier_mnist_n100_alone_s2" in trained
