"""Likelihood models (issue 17 §2): Burda et al.'s MLP VAE, the k-sample VAE and IWAE objectives,
their learning-rate schedule and the ``nll`` evaluation (the importance-sampled test NLL)."""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from experiments import anomaly
from experiments import likelihood as likelihood_experiment
from experiments import sweep
from genjax import config as config_lib
from genjax import losses
from genjax import runs
from genjax import train
from genjax.config import base_config
from genjax.errors import ConfigError
from genjax.methods import base as methods_base
from genjax.metrics import likelihood
from genjax.models import layers
from genjax.models import vae
from tests.conftest import apply_overrides
from tests.conftest import tiny_config
from tests.conftest import tiny_run


def mlp_vae(**overrides):
  """Burda et al.'s one-stochastic-layer VAE, narrowed, on synthetic 28px digits, binarised."""
  c = base_config("vae")
  c.dataset.name = "synthetic"
  c.dataset.image_size = 28
  c.dataset.value_range = (0.0, 1.0)
  apply_overrides(c, {"model.arch": "mlp", "model.latent_dim": 4, "model.hidden": (16, 16),
                      "method.binarize": True, "eval.metrics": "nll", "eval.nll_samples": 20,
                      "optimizer.learning_rate": 1e-3})
  return tiny_run(c, **overrides)


def test_burda_architecture_parameter_count_and_torch_outputs():
  model = vae.build((28, 28, 1), rngs=nnx.Rngs(0), arch="mlp", latent_dim=50,
                    hidden=(200, 200))["model"]
  # 784-200-200-100 encoder and 50-200-200-784 decoder, with biases
  assert layers.count_params(model) == (784 * 200 + 200 + 200 * 200 + 200 + 200 * 100 + 100 +
                                        50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784)
  assert layers.count_params(model) == 425_284
  # the decoder is torch's Linear-Tanh-Linear-Tanh-Linear with the same weights
  ref = torch.nn.Sequential(torch.nn.Linear(50, 200), torch.nn.Tanh(), torch.nn.Linear(200, 200),
                            torch.nn.Tanh(), torch.nn.Linear(200, 784))
  with torch.no_grad():
    for t, j in zip(ref[::2], model.decoder.layers):
      t.weight.copy_(torch.from_numpy(np.asarray(j.kernel[...]).T.copy()))
      t.bias.copy_(torch.from_numpy(np.asarray(j.bias[...]).copy()))
  z = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
  out = model.decode(jnp.asarray(z))
  assert out.shape == (3, 28, 28, 1)
  np.testing.assert_allclose(np.asarray(out).reshape(3, -1),
                             ref(torch.from_numpy(z)).detach().numpy(), rtol=1e-4, atol=1e-5)
  mu, logvar = model.encode(jnp.zeros((2, 28, 28, 1)))
  assert mu.shape == logvar.shape == (2, 50)


def test_softplus_matches_jax_in_value_and_gradient():
  x = jnp.asarray([-200.0, -30.0, -1.0, 0.0, 1e-3, 2.0, 40.0, 300.0])
  np.testing.assert_allclose(losses.softplus(x), jax.nn.softplus(x), rtol=1e-6, atol=0)
  np.testing.assert_allclose(jax.grad(lambda v: losses.softplus(v).sum())(x), jax.nn.sigmoid(x),
                             rtol=1e-6, atol=1e-30)


def _weights(c, k, seed=0):
  """The method, a fresh state and the ``[k, B]`` log weights of a synthetic batch."""
  config_lib.validate(c)
  method = runs.build_method(c)
  state = method.init(jax.random.PRNGKey(seed))
  model = method.net("model", state.params["model"], state.buffers["model"])
  x = method.images(jnp.asarray(np.random.default_rng(seed).integers(0, 256, (6, 28, 28, 1)),
                                jnp.uint8))
  x = (x > 0.5).astype(jnp.float32)
  return method, state, model, x, method.log_weights(model, x, x, jax.random.PRNGKey(1), k)


def test_log_weights_are_the_closed_form_terms():
  method, _, model, x, lw = _weights(mlp_vae(), 3)
  assert lw.shape == (3, 6)
  mu, logvar = model.encode(x)
  # the same noise, drawn as log_weights draws it (batch-major), gives z; recompute each term
  eps = jnp.swapaxes(jax.random.normal(jax.random.PRNGKey(1), (6, 3, 4)), 0, 1)
  z = mu + jnp.exp(0.5 * logvar) * eps
  logits = model.decode(z.reshape(18, 4)).reshape(3, 6, -1)
  log_px = -(jax.nn.softplus(logits) - x.reshape(1, 6, -1) * logits).sum(-1)
  log_prior = -0.5 * (z ** 2 + math.log(2 * math.pi)).sum(-1)
  log_q = -0.5 * (eps ** 2 + logvar + math.log(2 * math.pi)).sum(-1)
  np.testing.assert_allclose(lw, log_px + log_prior - log_q, rtol=1e-5, atol=1e-3)
  del method


@pytest.mark.parametrize("objective,k", [("elbo", 1), ("elbo", 5), ("iwae", 1), ("iwae", 5)])
def test_k_sample_objectives_are_the_bounds_of_the_log_weights(objective, k):
  c = mlp_vae(**{"method.objective": objective, "method.num_samples": k})
  method, state, _, _, _ = _weights(c, k)
  batch = {"image": jnp.asarray(np.random.default_rng(2).integers(0, 256, (16, 28, 28, 1)),
                                jnp.uint8)}
  _, out = jax.jit(method.step)(state, batch)
  # recompute with the step's own keys: the binarisation and the posterior samples
  data_key, model_key = jax.random.split(method.step_key(state))
  x, x_in = method.inputs(batch["image"], data_key)
  model = method.net("model", state.params["model"], state.buffers["model"])
  if objective == "elbo" and k == 1:  # the analytic-KL ELBO of the plain VAE
    res = model(x_in, model_key)
    want = jnp.mean(method.nll(res["recon"], x) + res["kl"])
  else:
    lw = method.log_weights(model, x, x_in, model_key, k)
    want = -jnp.mean((likelihood.iwae_bound if objective == "iwae" else likelihood.elbo)(lw))
  assert float(out["loss"]) == pytest.approx(float(want), rel=1e-5)


def test_iwae_bound_is_tighter_than_the_elbo_of_the_same_samples():
  _, _, _, _, lw = _weights(mlp_vae(), 50)
  assert np.all(np.asarray(likelihood.iwae_bound(lw)) >= np.asarray(likelihood.elbo(lw)) - 1e-4)


def test_burda_schedule_steps_down_by_ten_to_the_one_seventh_at_3_to_the_i_passes():
  c = base_config("vae")
  apply_overrides(c, {"optimizer.schedule": "burda", "optimizer.hold_steps": 10,
                      "num_steps": 20000})
  schedule = methods_base.make_schedule(c.optimizer, 20000, 1e-3)
  # stage i starts at pass (3^i - 1) / 2: passes 0, 1, 4, 13, 40, ..., 1093; none after stage 7
  for step, i in ((0, 0), (9, 0), (10, 1), (39, 1), (40, 2), (130, 3), (10929, 6), (10930, 7),
                  (19999, 7)):
    assert float(schedule(step)) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-5), step


@pytest.mark.parametrize("overrides,message", [
    ({"method.objective": "rws"}, "config.method.objective must be one of elbo, iwae"),
    ({"method.num_samples": 0}, "num_samples must be >= 1, got 0"),
    ({"method.objective": "iwae", "method.beta": 4.0}, "only at beta=1, got beta=4.0"),
    ({"model.arch": "resnet"}, "unknown model.arch 'resnet'; valid: conv, mlp"),
    ({"eval.nll_samples": 1}, r"config.eval.nll_samples must be >= 2"),
    ({"optimizer.schedule": "burda"}, "hold_steps is the first stage .* must be >= 1"),
])
def test_bad_likelihood_configs_are_one_line(overrides, message):
  with pytest.raises(ConfigError, match=message) as e:
    c = mlp_vae(**overrides)
    config_lib.validate(c)
    runs.build_method(c)
  assert "\n" not in str(e.value)


def test_models_without_a_posterior_are_refused():
  for family, overrides, message in (
      ("ae", {"method.objective": "iwae"}, "model 'ae' has none"),
      ("ae", {"method.num_samples": 5}, "model 'ae' has none"),
      ("ae", {"eval.metrics": "nll"}, "estimates log p.x. by importance sampling"),
      ("dcgan", {"eval.metrics": "nll"}, "needs a likelihood, and model 'dcgan'")):
    c = base_config(family)
    if family == "ae":
      c.dataset.value_range = (0.0, 1.0)
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(apply_overrides(c, overrides))


@pytest.fixture(scope="module")
def iwae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("iwae") / "run"
  train.train_and_evaluate(mlp_vae(**{"method.objective": "iwae", "method.num_samples": 3,
                                      "eval.every": 4}), str(workdir))
  return workdir


def test_nll_evaluation_is_the_importance_sampled_bound_of_the_split(iwae_run):
  lines = [json.loads(x) for x in (iwae_run / "metrics.jsonl").read_text().splitlines()]
  evals = [x for x in lines if "nll" in x]
  assert [x["step"] for x in evals] == [4] and evals[0]["nll_samples"] == 20
  assert evals[0]["nll"] <= evals[0]["nll_elbo"]
  # the same figure from the method's bounds of the first test batch alone is close, and the
  # estimate is the metrics library's: log_likelihood == estimate_log_likelihood
  method, state, config = runs.restore_run(iwae_run)
  from genjax import data  # pylint: disable=g-import-not-at-top
  images = data.load_config(config.dataset, "test")["image"][:8]
  rng = jax.random.PRNGKey(3)
  got = method.log_likelihood(state, jnp.asarray(images), rng)
  bin_key, sample_key = jax.random.split(rng)
  from genjax.data import binarize  # pylint: disable=g-import-not-at-top
  x = binarize(method.images(jnp.asarray(images)), bin_key)
  model = method.sampler_net(state)
  want = likelihood.estimate_log_likelihood(
      sample_key, x, model.encode, lambda x_, z: method._log_px(model, x_, z), num_samples=20)
  np.testing.assert_allclose(got["iwae"], want.iwae, rtol=1e-5)
  np.testing.assert_allclose(got["elbo"], want.elbo, rtol=1e-5)


def test_likelihood_summary_reads_the_final_5000_sample_line(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")  # nothing recorded
  (tmp_path / "results").mkdir()
  steps = 12000
  for _, run, objective, k in likelihood_experiment.rows()[:2]:
    (tmp_path / run).mkdir()
    lines = [{"step": 3000, "source": "train", "nll": 120.0 - k, "nll_elbo": 125.0,
              "nll_samples": 100},
             {"step": steps, "source": "train", "nll": 100.0 - k, "nll_elbo": 104.0,
              "nll_samples": 100},
             {"step": steps, "source": "evaluate", "nll": 99.0 - k, "nll_elbo": 104.0,
              "nll_samples": 5000}]
    (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    del objective
  summary = likelihood_experiment.evaluate(tmp_path, "mnist")
  first, second, third = summary["rows"][:3]
  assert (first["test_nll"], first["paper_nll"], first["nll_samples"]) == (98.0, 86.76, 5000)
  assert second["test_nll"] == 94.0 and [p["step"] for p in second["curve"]] == [3000, steps]
  assert third["missing"] and summary["passes"] == 4

  # the summary is the record: a scored row whose run is not here is kept (unless its command
  # changed), and train trains only the rows not recorded, resuming those that are here
  second["command"] += " --config.seed=1"
  (tmp_path / "results" / "likelihood_mnist.json").write_text(json.dumps(summary))
  shutil.rmtree(tmp_path / first["run"])
  shutil.rmtree(tmp_path / second["run"])
  again = likelihood_experiment.evaluate(tmp_path, "mnist")["rows"]
  assert again[0] == first and again[1]["missing"] and again[1]["command"] != second["command"]
  trained = []
  monkeypatch.setattr(sweep, "train", lambda root, run, *_: trained.append(run))
  likelihood_experiment.train(tmp_path, "mnist")
  assert trained == [run for _, run, *_ in likelihood_experiment.rows()[1:]]
  (tmp_path / first["run"]).mkdir()  # a recorded run that is here resumes
  trained.clear()
  likelihood_experiment.train(tmp_path, "mnist")
  assert trained == [run for _, run, *_ in likelihood_experiment.rows()]


def test_anomaly_summary_means_over_seeds_and_marks_missing_runs(tmp_path, monkeypatch):
  monkeypatch.setattr(sweep, "RESULTS", tmp_path)  # nothing recorded
  for k in range(10):
    for seed in (0, 1, 2):
      if (k, seed) == (9, 2):
        continue  # not finished
      run = tmp_path / anomaly.run_name("deep_svdd_mnist", k, seed)
      run.mkdir()
      lines = [{"step": 500, "auroc": 0.5}, {"step": anomaly.methods("mnist")[1].steps, "auroc": 0.9 + 0.01 * seed}]
      if seed:  # runs whose evaluation breaks the AUROC down by anomalous class
        lines[-1]["auroc_by_class"] = {"1": 0.5 + 0.1 * seed}
      run.joinpath("metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
  rows = {r["method"]: r for r in anomaly.evaluate(tmp_path, "mnist")["rows"]}
  one_class = rows["Deep SVDD, one-class"]
  assert one_class["classes"][0]["mean"] == pytest.approx(91.0)
  assert one_class["classes"][0]["std"] == pytest.approx(1.0)
  assert one_class["classes"][0]["paper"] == {"mean": 98.0, "std": 0.7}
  assert one_class["classes"][0]["auroc_by_class"] == {"1": {"1": pytest.approx(60.0)},
                                                      "2": {"1": pytest.approx(70.0)}}
  assert "auroc_by_class" not in rows["Deep SVDD, soft-boundary"]["classes"][0]
  assert one_class["classes"][9]["seeds"] == [0, 1] and not one_class["complete"]
  assert one_class["mean_over_classes"] is None
  assert rows["autoencoder reconstruction error"]["classes"][0]["auroc"] == []


def test_the_anomaly_sweep_trains_prerequisites_first_and_skips_recorded_detectors(
    tmp_path, monkeypatch):
  """Deep SVDD after its autoencoder, f-AnoGAN after its WGAN-GP (with the GAN's networks as
  its frozen ones), and a detector the committed summary records is not trained again: its
  prerequisite only where another detector still needs it."""
  monkeypatch.setattr(sweep, "RESULTS", tmp_path / "results")
  (tmp_path / "results").mkdir()
  record = anomaly.evaluate(tmp_path, "mnist")
  for row in record["rows"]:  # seed 0 of every class recorded, except f-AnoGAN's
    if not row["method"].startswith("f-AnoGAN"):
      for cell in row["classes"]:
        cell.update(seeds=[0], auroc=[90.0])
  (tmp_path / "results" / "anomaly_mnist.json").write_text(json.dumps(record))
  trained = []
  monkeypatch.setattr(sweep, "train", lambda root, run, config, flags=(): trained.append(
      (run, config, flags)))
  anomaly.train(tmp_path, "mnist")
  runs = [run for run, *_ in trained]
  assert runs[:2] == ["wgan_gp_mnist_c0_s0", "fanogan_mnist_c0_s0"]  # seed 0: f-AnoGAN only
  assert len(runs) == 2 * 10 + 2 * 2 * 10  # then seeds 1 and 2: autoencoder, one-class
  assert runs[20:22] == ["lenet_ae_mnist_c0_s1", "deep_svdd_mnist_c0_s1"]
  gan, flags = tmp_path / "wgan_gp_mnist_c0_s0", trained[1][2]
  # the recorded GANs' width and length, pinned now that the zoo config is wider and longer
  assert trained[0][2] == ("--config.dataset.classes=(0,)", "--config.seed=0",
                           "--config.eval.every=0", "--config.model.ngf=32",
                           "--config.model.ndf=32", "--config.num_steps=5000")
  assert f"--config.frozen.generator={gan}" in flags
  assert f"--config.frozen.discriminator={gan}#discriminator" in flags
  assert f"--config.init.from_run={tmp_path / 'lenet_ae_mnist_c0_s1'}" in trained[21][2]
  rows = {r["method"]: r for r in anomaly.evaluate(tmp_path, "mnist")["rows"]}
  assert rows["f-AnoGAN (izi_f, κ = 1)"]["commands"][0].startswith(
      "python -m genjax.cli.train --config=experiments/configs/wgan_gp_mnist.py "
      "--workdir=RUNS/wgan_gp_mnist_cK_sS")
  assert rows["f-AnoGAN (izi_f, κ = 1)"]["steps"] == 3000


def test_the_conv_vae_trains_on_the_iwae_bound_too():
  c = tiny_config("vae", **{"method.objective": "iwae", "method.num_samples": 3})
  config_lib.validate(c)
  method = runs.build_method(c)
  state = method.init(jax.random.PRNGKey(0))
  batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1)),
                                jnp.uint8)}
  new_state, out = jax.jit(method.step)(state, batch)
  assert np.isfinite(float(out["loss"])) and int(new_state.step) == 1
