"""f-AnoGAN: the izi_f residuals and score against their closed form, a frozen GAN that stays
frozen, the run's AUROC and grid, exact resume, a step on 8 devices, and one-line errors for a GAN
that does not fit."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import metrics
from genjax import runs
from genjax import train
from genjax.config import base_config
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from tests.conftest import tiny_config
from tests.conftest import tiny_run

NORMAL = 3


def wgan_gp(**overrides):
  """A tiny WGAN-GP (the zoo's critic: no BatchNorm) on the normal class of synthetic digits."""
  return tiny_config("dcgan", **{"model.d_norm": "none", "method.loss": "wasserstein",
                                 "method.penalty": "gp", "dataset.classes": (NORMAL,),
                                 "num_steps": 2, **overrides})


@pytest.fixture(scope="module")
def gans(tmp_path_factory):
  root = tmp_path_factory.mktemp("fanogan")
  train.train_and_evaluate(wgan_gp(), str(root / "gan"))
  train.train_and_evaluate(wgan_gp(**{"method.noise": "uniform"}), str(root / "uniform"))
  return root


def tiny_fanogan(gan, **overrides):
  c = base_config("fanogan")
  c.dataset.name = "synthetic"
  c.dataset.image_size = 32
  c.dataset.classes = (NORMAL,)
  c.model.latent_dim = 16
  c.model.width = 8
  c.frozen.generator = str(gan)
  c.frozen.discriminator = f"{gan}#discriminator"
  return tiny_run(c, **{"eval.every": 2, "eval.metrics": "auroc", **overrides})


def loaded(c):
  config_lib.validate(c)
  method = runs.build_method(c)
  weights = method.attach_frozen(frozen.for_config(c, method))
  return method, weights


def test_residuals_and_score_are_the_papers_izi_f(gans):
  method, weights = loaded(tiny_fanogan(gans / "gan", **{"method.kappa": 0.5}))
  state = method.init(jax.random.PRNGKey(0))
  images = data.load("synthetic", "test")["image"][:6]
  x = method.images(images)
  encoder = method.sampler_net(state)
  g, d = method.frozen["generator"].module, method.frozen["discriminator"].module
  recon = np.asarray(g(encoder(x)))
  f_x, f_r = np.asarray(d(x)["features"]), np.asarray(d(jnp.asarray(recon))["features"])
  image = np.mean(np.square(np.asarray(x) - recon), axis=(1, 2, 3))
  features = np.mean(np.square(f_x - f_r), axis=1)
  r = method.residuals(encoder, x, weights)
  np.testing.assert_allclose(r["image"], image, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(r["features"], features, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(method.anomaly_scores(state, images, weights),
                             image + 0.5 * features, rtol=1e-4, atol=1e-6)


def test_a_step_trains_the_encoder_alone(gans):
  method, weights = loaded(tiny_fanogan(gans / "gan"))
  state = method.init(jax.random.PRNGKey(0))
  before = jax.tree.map(np.copy, weights)
  batch = {"image": jnp.asarray(data.load_config(method.config.dataset)["image"][:16])}
  new, logged = jax.jit(method.step)(state, batch, weights)
  assert set(state.params) == {"encoder"}  # the GAN is no part of the train state
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params),
                                                      jax.tree.leaves(state.params)))
  jax.tree.map(np.testing.assert_array_equal, weights, before)
  r = method.residuals(method.net("encoder", state.params["encoder"], state.buffers["encoder"]),
                       method.images(batch["image"]), weights)
  np.testing.assert_allclose(logged["loss"], np.mean(method.score(r)), rtol=1e-5)
  np.testing.assert_allclose(logged["residual_features"], np.mean(r["features"]), rtol=1e-5)


def test_a_run_records_auroc_draws_reconstructions_and_resumes_exactly(gans, tmp_path):
  straight = train.train_and_evaluate(tiny_fanogan(gans / "gan"), str(tmp_path / "straight"))
  train.train_and_evaluate(tiny_fanogan(gans / "gan", num_steps=2), str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(tiny_fanogan(gans / "gan"), str(tmp_path / "resumed"))
  assert checkpoint.fingerprint(resumed.state) == checkpoint.fingerprint(straight.state)
  with open(tmp_path / "straight" / "metrics.jsonl") as f:
    lines = [line for line in map(json.loads, f) if "auroc" in line]
  assert [line["step"] for line in lines] == [2, 4]
  method, weights = loaded(tiny_fanogan(gans / "gan"))
  test = data.load("synthetic", "test")
  scores = method.anomaly_scores(straight.state, test["image"], weights)
  assert lines[-1]["auroc"] == pytest.approx(metrics.auroc(np.asarray(scores),
                                                           test["label"] != NORMAL), abs=1e-6)
  assert (tmp_path / "straight" / "samples" / "reconstructions.png").exists()
  grids = method.sample_grids(straight.state, {"image": test["image"][:16]},
                              jax.random.PRNGKey(0), weights)
  grid = np.asarray(grids["reconstructions"])  # 16 examples: 4 rows, 2 of inputs, 2 of G(E(x))
  assert grid.shape == (4, 4, 32, 32, 1)
  np.testing.assert_allclose(grid[0], method.images(test["image"][:4]))


@pytest.mark.parametrize("overrides,error,message", [
    ({"method.kappa": -1.0}, ConfigError, r"kappa must be >= 0, got -1.0"),
    ({"frozen.discriminator": ""}, ConfigError,
     r"needs that GAN's discriminator \(RUN#discriminator\)"),
    ({"frozen.discriminator": "{gan}"}, ConfigError,
     r"frozen.discriminator=.*gan is not a discriminator giving features of an image alone: "
     r"name it RUN#discriminator"),
    ({"frozen.generator": "{gan}#discriminator"}, ConfigError, r"is not a generator"),
    ({"model.latent_dim": 8}, ConfigError,
     r"the generator's latent has 16 dimensions, the encoder codes 8: set "
     r"--config.model.latent_dim=16"),
    ({"frozen.generator": "{uniform}"}, ConfigError,
     r"noise uniformly .* set --config.model.output=tanh"),
    ({"dataset.image_size": 64}, ConfigError,
     r"sees images of shape \(32, 32, 1\) in \(-1.0, 1.0\), this run \(64, 64, 1\)"),
    ({"dataset.value_range": (0.0, 1.0)}, ConfigError, r"this run \(32, 32, 1\) in \(0.0, 1.0\)"),
    ({"model.output": "relu"}, ConfigError, r"model.output"),
    ({"frozen.generator": "{acgan}"}, CheckpointError,
     r"config.frozen.generator=.* is a 'acgan' network, and this slot takes the generator of an "
     r"unconditional GAN"),
])
def test_a_gan_that_does_not_fit_is_refused_in_one_line(gans, overrides, error, message):
  if "{acgan}" in overrides.values() and not (gans / "acgan").exists():
    train.train_and_evaluate(tiny_config("acgan", num_steps=2), str(gans / "acgan"))
  runs_by_name = {name: str(gans / name) for name in ("gan", "uniform", "acgan")}
  overrides = {k: v.format(**runs_by_name) if isinstance(v, str) else v
               for k, v in overrides.items()}
  with pytest.raises(error, match=message) as e:
    loaded(tiny_fanogan(gans / "gan", **overrides))
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_a_step_on_8_devices_equals_one_device(gans, strategy_name):
  """The encoder's update from the global batch, with the frozen GAN replicated as an argument:
  the same as on one device (SGD keeps the comparison well conditioned, as in test_parallel)."""
  from genjax import parallel  # pylint: disable=g-import-not-at-top
  c = tiny_fanogan(gans / "gan", **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.05,
                                    "optimizer.b1": 0.0})
  method, weights = loaded(c)
  init = method.init(jax.random.PRNGKey(0))
  batch = {"image": data.load_config(c.dataset)["image"][:c.batch_size]}
  expected, logged = jax.device_get(jax.jit(method.step)(init, batch, weights))
  strategy = parallel.make_strategy(strategy_name)
  placed = runs.build_method(c, strategy.axis_name)
  placed_weights = strategy.put_state(placed.attach_frozen(frozen.for_config(c, placed)))
  state, got_logged = strategy.compile(placed.step, frozen=True)(
      strategy.put_state(init), strategy.put_batch(batch), placed_weights)
  got = jax.device_get(strategy.get_state(state))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got.params),
                                                      jax.tree.leaves(init.params)))
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(expected.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
  np.testing.assert_allclose(float(strategy.fetch(got_logged)["loss"]), float(logged["loss"]),
                             rtol=1e-5)


def test_the_residual_breakdown_scores_the_run_and_its_ink_normalised_variant(gans, tmp_path):
  """experiments/fanogan_residuals.py: its ``score`` is the run's own anomaly score,
  ``relative_image`` is sum (x - G(E(x)))^2 / sum x^2 in [0, 1] units, its AUROCs are those of
  these scores, and classes without a run are marked missing."""
  import scipy.stats  # pylint: disable=g-import-not-at-top
  from experiments import fanogan_residuals  # pylint: disable=g-import-not-at-top
  c = tiny_fanogan(gans / "gan", num_steps=2, **{"eval.every": 0})
  run = tmp_path / f"fanogan_synthetic_c{NORMAL}_s0"
  state = train.train_and_evaluate(c, str(run)).state
  test = data.load("synthetic", "test")
  images, labels = test["image"], np.asarray(test["label"])

  r = fanogan_residuals.residuals(run, images)
  method, weights = loaded(c)
  x = method.images(images[:8])
  np.testing.assert_allclose(r["score"][:8], method.anomaly_scores(state, images[:8], weights),
                             rtol=1e-5, atol=1e-7)
  recon = method.residuals(method.sampler_net(state), x, weights)["recon"]
  lo, hi = method.value_range
  unit = lambda v: (np.asarray(v, np.float64) - lo) / (hi - lo)  # pylint: disable=unnecessary-lambda-assignment
  np.testing.assert_allclose(r["sq_error"][:8], np.square(unit(x) - unit(recon)).sum((1, 2, 3)),
                             rtol=1e-4)
  np.testing.assert_allclose(r["energy"][:8], np.square(unit(x)).sum((1, 2, 3)), rtol=1e-5)

  summary = fanogan_residuals.analyse(tmp_path, "synthetic")
  (row,) = [row for row in summary["rows"] if not row.get("missing")]
  assert row["normal"] == NORMAL and len(summary["rows"]) == 10
  relative = r["sq_error"] / r["energy"]
  for name, scores in (("score", r["score"]), ("relative_image", relative)):
    assert row["auroc"][name] == round(100 * metrics.auroc(scores, labels != NORMAL), 2), name
  assert set(row["auroc_by_class"]) == {str(j) for j in set(labels.tolist()) - {NORMAL}}
  a, b = np.random.default_rng(0).normal(size=(2, 50))
  assert fanogan_residuals.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b)[0])
