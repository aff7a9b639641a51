"""Autoencoding: plain, denoising and variational autoencoders trained by likelihood.

The loss per example is ``-log p(x | decoder(z)) + beta * KL`` (the KL only where the model
returns one, i.e. for VAEs, where this is the negative ELBO at ``beta=1``). A denoising
autoencoder encodes a corrupted input (``corruption``) and reconstructs the clean image.

A VAE may also train on ``num_samples`` = k importance samples per example (Burda et al. 2016):
with ``objective="elbo"`` the loss is minus the mean of the k log weights
``log p(x|z_i) + log p(z_i) - log q(z_i|x)`` (their "VAE" with k samples), with
``objective="iwae"`` minus their log-mean-exp, the IWAE bound. The ``nll`` evaluation
(``config.eval.metrics``) estimates the test split's ``-log p(x)`` with the IWAE bound of
``config.eval.nll_samples`` samples (5000 in Burda et al.).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from genjax import data
from genjax import errors
from genjax import losses
from genjax import models
from genjax import parallel
from genjax.errors import ConfigError
from genjax.methods.base import grid_shape
from genjax.methods.base import Method
from genjax.methods.base import TrainState
from genjax.metrics import likelihood
from genjax.metrics.options import parse_metrics

LIKELIHOODS = ("bernoulli", "gaussian")
OBJECTIVES = ("elbo", "iwae")
NLL_CHUNK = 1 << 15  # decoded images alive at once in the nll evaluation (samples x batch)


class Autoencoding(Method):
  DEFAULTS = dict(
      likelihood="bernoulli",  # 'bernoulli' (decoder gives logits; data in [0, 1]) or 'gaussian'
      sigma=0.1,  # std of the Gaussian likelihood, in value_range units
      beta=1.0,  # KL weight (beta-VAE); unused by models without a KL
      binarize=False,  # dynamic binarisation of the [0, 1] inputs each step
      corruption="none",  # denoising: none, gaussian, salt_pepper, mask, dropout
      corruption_level=0.0,  # noise std / pixel probability / patch side fraction
      objective="elbo",  # VAEs: 'elbo' or 'iwae' over num_samples importance samples
      num_samples=1,  # VAEs: k importance samples per example (1 and elbo: the analytic KL)
  )
  SAMPLE_NET = "model"

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    vr = tuple(config.dataset.value_range)
    # a family whose decoder ends in a squashing function takes the likelihoods it fits only
    errors.check_config_choice("method.likelihood", m.likelihood, getattr(
        models.get(config.model.name), "LIKELIHOODS", LIKELIHOODS))
    if (m.likelihood == "bernoulli" or m.binarize) and vr != (0.0, 1.0):
      raise ConfigError("a Bernoulli likelihood or binarize=True needs pixels in [0, 1]: set "
                        "--config.dataset.value_range='(0., 1.)'")
    errors.check_config_choice("method.corruption", m.corruption, data.CORRUPTIONS)
    limit = np.inf if m.corruption == "gaussian" else 1.0
    if not 0.0 <= m.corruption_level <= limit:
      raise ConfigError(f"config.method.corruption_level must be in [0, {limit}] for "
                        f"{m.corruption!r}, got {m.corruption_level}")
    if m.sigma <= 0 or m.beta < 0:
      raise ConfigError(f"config.method.sigma must be > 0 and beta >= 0, got {m.sigma}, "
                        f"{m.beta}")
    errors.check_config_choice("method.objective", m.objective, OBJECTIVES)
    if m.num_samples < 1:
      raise ConfigError(f"config.method.num_samples must be >= 1, got {m.num_samples}")
    variational = getattr(models.get(config.model.name), "HAS_PRIOR", False)
    if (m.objective == "iwae" or m.num_samples > 1) and not variational:
      raise ConfigError(f"config.method.objective={m.objective!r} with num_samples="
                        f"{m.num_samples} weighs samples of a posterior: model "
                        f"{config.model.name!r} has none (use a VAE, --config.model.name=vae)")
    if m.objective == "iwae" and m.beta != 1.0:
      raise ConfigError(f"config.method.objective='iwae' is a bound on log p(x) only at "
                        f"beta=1, got beta={m.beta}")
    if "nll" in parse_metrics(config.eval.metrics) and not variational:
      raise ConfigError(f"config.eval.metrics=nll estimates log p(x) by importance sampling a "
                        f"posterior: model {config.model.name!r} has none (use a VAE)")

  def nll(self, recon: jax.Array, x: jax.Array) -> jax.Array:
    """``-log p(x | recon)`` per example, ``[B]``."""
    # flat [B, D]: XLA's CPU reductions over [B, H, W, 1] images are several times slower
    recon, x = recon.reshape(recon.shape[0], -1), x.reshape(x.shape[0], -1)
    if self.mc.likelihood == "bernoulli":
      return losses.bernoulli_nll(recon, x)
    return losses.gaussian_nll(recon, x, self.mc.sigma)

  def mean(self, recon: jax.Array) -> jax.Array:
    """The decoder's output as an image (the likelihood's mean)."""
    recon = recon.astype(jnp.float32)
    if self.mc.likelihood == "bernoulli":
      return jax.nn.sigmoid(recon)
    return jnp.clip(recon, *self.value_range)

  def inputs(self, images: jax.Array, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target, encoder input): binarised if configured, and corrupted for denoising."""
    bin_key, noise_key = jax.random.split(rng)
    x = self.images(images)
    if self.mc.binarize:
      x = data.binarize(x, bin_key, self.axis_name)
    x_in = data.corrupt(x, noise_key, kind=self.mc.corruption, level=self.mc.corruption_level,
                        value_range=self.value_range, axis_name=self.axis_name)
    return x, x_in

  def step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    data_key, model_key = jax.random.split(self.step_key(state))
    x, x_in = self.inputs(batch["image"], data_key)
    buffers = state.buffers["model"]

    def loss_fn(params):
      model = self.net("model", params, buffers)
      if self.mc.objective == "iwae" or self.mc.num_samples > 1:
        lw = self.log_weights(model, x, x_in, model_key, self.mc.num_samples)
        bound = (likelihood.iwae_bound if self.mc.objective == "iwae" else likelihood.elbo)(lw)
        loss = -jnp.mean(bound)
        return loss, ({"loss": loss}, self.buffers_of(model))
      out = model(x_in, model_key)
      nll = self.nll(out["recon"], x)
      terms = {"nll": jnp.mean(nll)}
      loss = nll
      if "kl" in out:
        terms["kl"] = jnp.mean(out["kl"])
        loss = nll + self.mc.beta * out["kl"]
      loss = jnp.mean(loss)
      terms["loss"] = loss
      return loss, (terms, self.buffers_of(model))

    grads, (metrics, new_buffers) = jax.grad(loss_fn, has_aux=True)(state.params["model"])
    params, opt_state = self.update(state, "model", grads)
    return self.finish(state, {"model": params}, {"model": new_buffers},
                       {"model": opt_state}, metrics)

  def log_weights(self, model, x: jax.Array, x_in: jax.Array, rng: jax.Array,
                  k: int) -> jax.Array:
    """``[k, B]`` log importance weights of ``k`` posterior samples of the encoding of ``x_in``
    per example, scoring the targets ``x``."""
    mu, logvar = model.encode(x_in)
    eps = parallel.batch_random(jax.random.normal, rng, (mu.shape[0], k, *mu.shape[1:]),
                                self.axis_name)
    z = mu[None] + jnp.exp(0.5 * logvar)[None] * jnp.swapaxes(eps, 0, 1)
    return likelihood.log_importance_weights(self._log_px(model, x, z), z, mu, logvar)

  def _log_px(self, model, x: jax.Array, z: jax.Array) -> jax.Array:
    """``log p(x | z)`` ``[k, B]`` for latent samples ``z`` ``[k, B, L]``."""
    k, b = z.shape[:2]
    recon = model.decode(z.reshape(k * b, *z.shape[2:])).reshape(k * b, -1)
    target = jnp.broadcast_to(x.reshape(1, b, -1), (k, b, recon.shape[-1]))
    return -self.nll(recon, target.reshape(k * b, -1)).reshape(k, b)

  def log_likelihood(self, state, images: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
    """Per-example lower bounds on ``log p(x)`` of uint8 ``images`` (binarised with ``rng``
    if the method binarises), ``{"iwae": [B], "elbo": [B]}`` in nats, from
    ``config.eval.nll_samples`` importance samples of the sampling network's posterior."""
    bin_key, sample_key = jax.random.split(rng)
    x = self.images(images)
    if self.mc.binarize:
      x = data.binarize(x, bin_key, self.axis_name)
    model = self.sampler_net(state)
    k = self.config.eval.nll_samples
    bounds = likelihood.estimate_log_likelihood(
        sample_key, x, model.encode, functools.partial(self._log_px, model), num_samples=k,
        chunk_size=max(1, NLL_CHUNK // x.shape[0]))
    return bounds._asdict()

  @property
  def EVAL_CONDITION(self) -> tuple[str, ...]:  # pylint: disable=invalid-name
    """Models with a prior (VAEs) are scored on prior samples, the others on reconstructions."""
    return () if getattr(self.family, "HAS_PRIOR", False) else ("image",)

  def eval_inputs(self, rng, n, condition):
    if condition is not None:
      return condition["image"]
    return jax.random.normal(rng, (n, self.config.model.latent_dim))

  def reconstruct(self, state, x_in: jax.Array) -> jax.Array:
    """The sampling network's reconstruction of encoder inputs ``x_in`` (a denoising
    autoencoder's denoised images; a VAE decodes its posterior mean), as images."""
    model = self.sampler_net(state)
    z = model.encode(x_in)
    return self.mean(model.decode(z[0] if isinstance(z, tuple) else z))

  def anomaly_scores(self, state, images):
    """The squared error of the clean images' reconstructions (Deep SVDD's autoencoder
    baseline), per image."""
    x = self.images(images)
    return losses.squared_distance(self.reconstruct(state, x), x)

  def features(self, state, images):
    """The code of the clean images (a VAE's posterior mean)."""
    z = self.sampler_net(state).encode(self.images(images))
    return (z[0] if isinstance(z, tuple) else z).astype(jnp.float32)

  def eval_generate(self, state, inputs):
    if self.EVAL_CONDITION:
      _, x_in = self.inputs(inputs, jax.random.PRNGKey(0))
      return self.reconstruct(state, x_in)
    return self.mean(self.sampler_net(state).decode(inputs))

  def sample_grids(self, state, examples, rng):
    images = examples["image"]
    model = self.sampler_net(state)
    prior_key, noise_key = jax.random.split(rng)
    x, x_in = self.inputs(images, noise_key)
    n = x.shape[0]
    rows, cols = grid_shape(n)
    n = rows * cols
    x, x_in = x[:n], x_in[:n]
    z = model.encode(x_in)
    variational = isinstance(z, tuple)
    z = z[0] if variational else z  # VAE: reconstruct from the posterior mean
    recon = self.mean(model.decode(z))
    # Groups of rows: the clean input, the corrupted input (denoising only), the reconstruction.
    shape = x.shape[1:]
    shown = [x, x_in, recon] if self.mc.corruption != "none" else [x, recon]
    pairs = jnp.stack([v.reshape(rows, cols, *shape) for v in shown], 1)
    grids = {"reconstructions": pairs.reshape(len(shown) * rows, cols, *shape)}
    if variational:
      zp = jax.random.normal(prior_key, (n, z.shape[-1]))
      grids["prior_samples"] = self.mean(model.decode(zp)).reshape(rows, cols, *shape)
      # Latent interpolation between consecutive pairs of posterior means.
      t = jnp.linspace(0.0, 1.0, cols)[None, :, None]
      za, zb = z[0:2 * rows:2][:rows], z[1:2 * rows:2][:rows]
      if za.shape[0] == rows and zb.shape[0] == rows:
        zi = (1 - t) * za[:, None] + t * zb[:, None]
        grids["interpolation"] = self.mean(model.decode(zi.reshape(-1, z.shape[-1]))).reshape(
            rows, cols, *shape)
    return grids
