"""f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): anomaly detection with a GAN trained on
normal data, and an encoder into its latent space.

Training comes in two stages, two runs:
  1. an unconditional GAN (WGAN-GP in the paper; ``wgan_gp_<dataset>`` with
     ``--config.dataset.classes='(k,)'``) on the normal class only;
  2. this method: the encoder E alone, the GAN's generator G and discriminator D frozen
     (``config.frozen.generator=RUN``, ``config.frozen.discriminator=RUN#discriminator``),
     by the paper's izi_f objective, the mean over the batch of

       A(x) = mean_pixels (x - G(E(x)))^2 + kappa * mean_features (f(x) - f(G(E(x))))^2,

     f being D's last features (the input of its logit layer).

``A(x)`` with the same ``kappa`` (1 in the paper) is the anomaly score of a test image: the
``auroc`` evaluation ranks it against ``config.dataset.classes``. The run must see images as the
GAN did (same size and value range), and E must code the GAN's latent (``model.latent_dim``,
and ``model.output=tanh`` for a generator of uniform noise): checked at start-up.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genjax.errors import ConfigError
from genjax.methods.base import FrozenSlot
from genjax.methods.base import grid_shape
from genjax.methods.base import Method
from genjax.methods.base import TrainState

GANS = ("dcgan", "sngan", "sagan")  # unconditional GAN families whose discriminator gives features


class FAnoGAN(Method):
  DEFAULTS = dict(
      kappa=1.0,  # weight of the discriminator-feature residual, in training and in the score
  )
  SAMPLE_NET = "encoder"
  FROZEN = {
      "generator": FrozenSlot("the generator of an unconditional GAN trained on the normal "
                              "data", families=GANS),
      "discriminator": FrozenSlot("that GAN's discriminator (RUN#discriminator), whose features "
                                  "score the residual", families=GANS),
  }

  @classmethod
  def required_frozen(cls, config) -> tuple[str, ...]:
    del config
    return ("generator", "discriminator")

  @classmethod
  def validate(cls, config) -> None:
    if not config.method.kappa >= 0:
      raise ConfigError(f"config.method.kappa must be >= 0, got {config.method.kappa}")

  def check_frozen(self, networks) -> None:
    g, d = networks["generator"], networks["discriminator"]
    source = g.method
    if source.cond_classes or source.num_categorical or source.num_continuous:
      raise ConfigError(f"config.frozen.generator={g.source} takes labels or codes besides its "
                        f"noise: f-AnoGAN inverts an unconditional generator")
    if getattr(g.module, "spec", None) is None or not g.module.spec.latent_dim:
      raise ConfigError(f"config.frozen.generator={g.source} is not a generator: name the "
                        f"GAN run itself (its sampling network)")
    spec = getattr(d.module, "spec", None)
    if spec is None or "features" not in spec.returns or spec.takes:
      raise ConfigError(f"config.frozen.discriminator={d.source} is not a discriminator giving "
                        f"features of an image alone: name it RUN#discriminator")
    encoder = self.abstract_nets["encoder"]
    if encoder.latent_dim != source.latent_dim:
      raise ConfigError(f"the generator's latent has {source.latent_dim} dimensions, the "
                        f"encoder codes {encoder.latent_dim}: set "
                        f"--config.model.latent_dim={source.latent_dim}")
    if source.mc.noise == "uniform" and encoder.output != "tanh":
      raise ConfigError("the generator draws its noise uniformly in [-1, 1]: set "
                        "--config.model.output=tanh")
    for net in (g, d):
      if (tuple(net.method.image_shape) != tuple(self.image_shape) or
          tuple(net.method.value_range) != self.value_range):
        raise ConfigError(
            f"{net.source} sees images of shape {tuple(net.method.image_shape)} in "
            f"{tuple(net.method.value_range)}, this run {tuple(self.image_shape)} in "
            f"{self.value_range}: set config.dataset.image_size and value_range as that run's")

  def residuals(self, encoder, x: jax.Array, frozen) -> dict[str, jax.Array]:
    """Per-example residuals of ``x`` through ``G(E(x))``: ``image`` (mean squared pixel
    difference) and ``features`` (mean squared difference of D's features), and ``recon``."""
    g, d = self.frozen["generator"].method, self.frozen["discriminator"].method
    recon = g.generate(self.frozen_net("generator", frozen), {"z": encoder(x)})
    x, recon = x.astype(jnp.float32), recon.astype(jnp.float32)
    d_net = self.frozen_net("discriminator", frozen)
    features = d.call_d(d_net, jnp.concatenate([x, recon]), None, None)["features"]
    real, fake = jnp.split(features.astype(jnp.float32), 2)
    flat = lambda v: v.reshape(v.shape[0], -1)  # pylint: disable=unnecessary-lambda-assignment
    return {"image": jnp.mean(jnp.square(flat(x) - flat(recon)), -1),
            "features": jnp.mean(jnp.square(real - fake), -1), "recon": recon}

  def score(self, residuals: dict[str, jax.Array]) -> jax.Array:
    return residuals["image"] + self.mc.kappa * residuals["features"]

  def step(self, state: TrainState, batch, frozen) -> tuple[TrainState, dict]:
    x = self.images(batch["image"])
    buffers = state.buffers["encoder"]

    def loss_fn(params):
      encoder = self.net("encoder", params, buffers)
      r = self.residuals(encoder, x, frozen)
      loss = jnp.mean(self.score(r))
      return loss, ({"loss": loss, "residual_image": jnp.mean(r["image"]),
                     "residual_features": jnp.mean(r["features"])}, self.buffers_of(encoder))

    grads, (metrics, new_buffers) = jax.grad(loss_fn, has_aux=True)(state.params["encoder"])
    params, opt_state = self.update(state, "encoder", grads)
    return self.finish(state, {"encoder": params}, {"encoder": new_buffers},
                       {"encoder": opt_state}, metrics)

  def anomaly_scores(self, state: TrainState, images: jax.Array, frozen=None) -> jax.Array:
    """``A(x)`` per uint8 image, the encoder in inference mode."""
    return self.score(self.residuals(self.sampler_net(state), self.images(images), frozen))

  def features(self, state, images):
    """The latent code E(x)."""
    return self.sampler_net(state)(self.images(images)).astype(jnp.float32)

  def sample_grids(self, state, examples, rng, frozen=None):
    """``reconstructions``: rows of training examples x, each followed by G(E(x))."""
    del rng
    rows, cols = grid_shape(examples["image"].shape[0])
    pairs = max(1, rows // 2)
    x = self.images(examples["image"][:pairs * cols])
    recon = jnp.clip(self.residuals(self.sampler_net(state), x, frozen)["recon"],
                     *self.value_range).astype(x.dtype)
    grid = jnp.stack([x.reshape(pairs, cols, *x.shape[1:]),
                      recon.reshape(pairs, cols, *x.shape[1:])], 1)
    return {"reconstructions": grid.reshape(2 * pairs, cols, *x.shape[1:])}
