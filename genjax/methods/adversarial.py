"""Adversarial training of an unconditional generator against a discriminator.

One update, as in pytorch/examples' DCGAN: the generator runs once on fresh noise; the
discriminator takes one step on the real batch and the (detached) fakes; the generator then takes
one step through the updated discriminator, reusing the first forward pass via its VJP. The loss
pair comes from ``losses.GAN_LOSSES[config.method.loss]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax import losses
from genjax import parallel
from genjax.errors import ConfigError
from genjax.methods.base import Method
from genjax.methods.base import TrainState


class Adversarial(Method):
  DEFAULTS = dict(
      loss="non_saturating",  # a key of losses.GAN_LOSSES
      d_learning_rate=0.0,  # discriminator learning rate (TTUR); 0 = optimizer.learning_rate
  )
  SAMPLE_NET = "generator"

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    if m.loss not in losses.GAN_LOSSES:
      raise ConfigError(f"config.method.loss must be one of {', '.join(losses.GAN_LOSSES)}, got "
                        f"{m.loss!r}")
    if m.d_learning_rate < 0:
      raise ConfigError(f"config.method.d_learning_rate must be >= 0, got {m.d_learning_rate}")

  def learning_rate(self, role: str) -> float:
    if role == "discriminator" and self.mc.d_learning_rate:
      return self.mc.d_learning_rate
    return super().learning_rate(role)

  def noise(self, rng: jax.Array, n: int) -> jax.Array:
    return parallel.batch_random(jax.random.normal, rng, (n, self.config.model.latent_dim),
                                 self.axis_name)

  def step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    d_loss_fn, g_loss_fn = losses.GAN_LOSSES[self.mc.loss]
    real = self.images(batch["image"])
    z = self.noise(self.step_key(state), real.shape[0])

    def generate(params):
      g = self.net("generator", params, state.buffers["generator"])
      return g(z), self.buffers_of(g)

    fake, g_vjp, g_buffers = jax.vjp(generate, state.params["generator"], has_aux=True)

    def d_objective(params):
      d = self.net("discriminator", params, state.buffers["discriminator"])
      real_logits, fake_logits = d(real), d(fake)
      return d_loss_fn(real_logits, fake_logits), (real_logits, fake_logits, self.buffers_of(d))

    (d_loss, (real_logits, fake_logits, d_buffers)), d_grads = jax.value_and_grad(
        d_objective, has_aux=True)(state.params["discriminator"])
    d_params, d_opt = self.update(state, "discriminator", d_grads)

    def g_objective(fake_images):
      d = self.net("discriminator", d_params, d_buffers)
      return g_loss_fn(d(fake_images)), self.buffers_of(d)

    (g_loss, d_buffers), fake_grads = jax.value_and_grad(g_objective, has_aux=True)(fake)
    (g_grads,) = g_vjp(fake_grads)
    g_params, g_opt = self.update(state, "generator", g_grads)

    metrics = {"loss_d": d_loss, "loss_g": g_loss,
               "d_real": jnp.mean(jax.nn.sigmoid(real_logits.astype(jnp.float32))),
               "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits.astype(jnp.float32)))}
    return self.finish(state, {"generator": g_params, "discriminator": d_params},
                       {"generator": g_buffers, "discriminator": d_buffers},
                       {"generator": g_opt, "discriminator": d_opt}, metrics)

  def eval_inputs(self, rng, n, real):
    del real
    return jax.random.normal(rng, (n, self.config.model.latent_dim))

  def eval_generate(self, state, z):
    return self.sampler_net(state)(z).astype(jnp.float32)

  def sample_grids(self, state, images, rng):
    n = images.shape[0]
    cols = int(np.sqrt(n))
    rows = max(1, n // cols)
    fake = self.eval_generate(state, self.eval_inputs(rng, rows * cols, None))
    return {"samples": fake.reshape(rows, cols, *fake.shape[1:])}
