"""The domain classifier: model, classification method, load_classifier and the committed runs."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genjax import config as config_lib
from genjax import data
from genjax import parallel
from genjax import runs
from genjax import train
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.methods import classification
from genjax.models import classifier
from genjax.models import layers
from tests.conftest import apply_overrides

CLASSIFIERS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "classifiers"


def tiny_classifier_config(**overrides):
  """A synthetic-data classifier run small enough for a CPU test (tiny_config's conventions)."""
  c = config_lib.base_config("classifier")
  c.dataset.name = "synthetic"
  c.dataset.image_size = 32
  c.dataset.value_range = (0.0, 1.0)
  c.model.width = 8
  c.model.features = 32
  c.batch_size = 16
  c.num_steps = 60
  c.log_every = 20
  c.sample_every = 60
  c.checkpoint_every = 60
  c.num_samples = 16
  c.optimizer.learning_rate = 3e-3
  c.optimizer.b1 = 0.9
  c.compilation_cache_dir = ""
  apply_overrides(c, overrides)
  return c


@pytest.mark.parametrize("shape", [(32, 32, 1), (28, 28, 1), (32, 32, 3)])
def test_output_shapes(shape):
  build = lambda: classifier.build(shape, rngs=nnx.Rngs(0))["model"]  # pylint: disable=unnecessary-lambda-assignment
  out = jax.eval_shape(lambda: build()(jnp.zeros((2, *shape))))
  assert out["logits"].shape == (2, 10) and out["features"].shape == (2, 128)
  if shape == (32, 32, 1):  # 5x5x32 + 5x5x64 + 3x3x64 convs, fc 4*4*64 -> 128 -> 10
    assert layers.count_params(nnx.eval_shape(build)) == 221_674


def test_dropout_only_with_an_rng():
  net = classifier.build((32, 32, 1), rngs=nnx.Rngs(0), dropout=0.5)["model"]
  net = nnx.view(net, use_running_average=True)
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 1))
  a, b = net(x), net(x)
  np.testing.assert_array_equal(a["logits"], b["logits"])
  c = net(x, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(c["features"], a["features"])  # features precede dropout
  assert not np.allclose(c["logits"], a["logits"])


def test_validation():
  c = tiny_classifier_config()
  config_lib.validate(c)
  for key, value, match in [("model.num_classes", 5, "num_classes=5 but synthetic has 10"),
                            ("method.translate", -1, "translate must be an integer >= 0"),
                            ("method.label_smoothing", 1.0, "label_smoothing"),
                            ("eval.every", 10, "a classifier generates nothing to evaluate")]:
    bad = tiny_classifier_config(**{key: value})
    with pytest.raises(ConfigError, match=match):
      config_lib.validate(bad)


def test_augmentation_shifts_and_does_not_depend_on_the_device_count():
  c = tiny_classifier_config(**{"method.translate": 3})
  shape = config_lib.image_shape(c)
  x = jax.random.uniform(jax.random.PRNGKey(0), (16, *shape))
  key = jax.random.PRNGKey(1)
  one = classification.Classification(c, shape, 10).augment(x, key)
  pmapped = classification.Classification(c, shape, 10, axis_name="batch")
  eight = jax.pmap(lambda xs: pmapped.augment(xs, key), axis_name="batch")(
      x.reshape(8, 2, *shape)).reshape(x.shape)
  np.testing.assert_array_equal(one, eight)
  # Every output is its input translated by at most 3 pixels, the background filling in.
  padded = np.pad(np.asarray(x), ((0, 0), (3, 3), (3, 3), (0, 0)))
  for i in range(16):
    assert any(np.array_equal(np.asarray(one[i]), padded[i, dy:dy + 32, dx:dx + 32])
               for dy in range(7) for dx in range(7))
  assert not np.array_equal(one, x)


@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_one_step_on_8_devices_equals_one_device(strategy_name):
  """Augmentation and dropout noise are global samples: the step ignores the device count."""
  c = tiny_classifier_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 0.05,
                                "optimizer.b1": 0.0, "model.dropout": 0.3,
                                "method.translate": 2})
  arrays = data.load("synthetic", "train")
  batch = {k: v[:c.batch_size] for k, v in arrays.items()}
  single = runs.build_method(c)
  init = single.init(jax.random.PRNGKey(0))
  expected, expected_metrics = jax.device_get(jax.jit(single.step)(init, batch))
  strategy = parallel.make_strategy(strategy_name)
  method = runs.build_method(c, strategy.axis_name)
  state = strategy.put_state(method.init(jax.random.PRNGKey(0)))
  new_state, metrics = strategy.compile(method.step)(state, strategy.put_batch(batch))
  got = jax.device_get(strategy.get_state(new_state))
  for a, b in zip(jax.tree.leaves((got.params, got.buffers)),
                  jax.tree.leaves((expected.params, expected.buffers))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
  for k, v in strategy.fetch(metrics).items():
    np.testing.assert_allclose(v, expected_metrics[k], rtol=1e-5, err_msg=k)


def test_trains_on_synthetic_and_load_classifier_reproduces_it(tmp_path):
  c = tiny_classifier_config()
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result.metrics["accuracy"] >= 0.95, result.metrics  # last 20 steps' train batches
  method = runs.build_method(c)
  test = data.load("synthetic", "test")
  assert classification.accuracy(method, result.state, test["image"], test["label"], 48) >= 0.95
  assert (tmp_path / "samples" / "inputs.png").exists()

  extractor = runs.load_classifier(tmp_path)
  images = test["image"][:40]
  got = extractor(images)
  want = method.sampler_net(result.state)(method.images(images))
  np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["features"], want["features"], rtol=1e-5, atol=1e-5)
  # 28x28 inputs in [0, 1] are padded to the training size the way the data pipeline pads them.
  np.testing.assert_allclose(extractor(images.astype(np.float32) / 255.0)["logits"],
                             got["logits"], rtol=1e-5, atol=1e-5)
  # RGB images are reduced to their luma for this grayscale classifier: gray RGB is the same.
  np.testing.assert_allclose(extractor(np.repeat(images, 3, -1))["logits"], got["logits"],
                             rtol=1e-4, atol=1e-4)

  with pytest.raises(Exception, match="no checkpoints"):
    runs.load_classifier(tmp_path / "nowhere")


@pytest.mark.parametrize("dataset,minimum", [("mnist", 0.99), ("fashion_mnist", 0.90)])
def test_committed_classifiers(dataset, minimum):
  try:
    test = data.load(dataset, "test")
  except DataError as e:
    pytest.skip(f"{dataset} is not available here: {e}")
  extractor = runs.load_classifier(CLASSIFIERS / dataset)
  images, labels = test["image"][:2000], test["label"][:2000]
  out = extractor(images)
  assert out["features"].shape == (2000, 128)
  assert np.mean(np.argmax(out["logits"], -1) == labels) >= minimum
