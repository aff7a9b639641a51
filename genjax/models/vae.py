"""Variational autoencoder (Kingma & Welling 2014) with a diagonal Gaussian encoder.

β-VAE is the same model trained with ``config.method.beta != 1``. The decoder's output is read
by the method's likelihood (Bernoulli logits or Gaussian means).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import losses
from genjax import parallel
from genjax.models.ae import Autoencoder

METHOD = "autoencoding"
HAS_PRIOR = True  # samples come from decoding N(0, I)


class VAE(Autoencoder):
  """The autoencoder's networks; the encoder gives the posterior's mean and log-variance."""

  CODE_WIDTH = 2

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and log-variance, float32."""
    h = self.encoder(x).astype(jnp.float32)
    return h[:, :self.latent_dim], h[:, self.latent_dim:]

  def __call__(self, x: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
    mu, logvar = self.encode(x)
    eps = parallel.batch_random(jax.random.normal, rng, mu.shape, self.axis_name)
    z = mu + jnp.exp(0.5 * logvar) * eps  # reparameterisation
    return {"recon": self.decode(z), "z": z, "mu": mu, "logvar": logvar,
            "kl": losses.gaussian_kl(mu, logvar)}


def build(image_shape, *, rngs: nnx.Rngs, axis_name=None, dtype=None, latent_dim: int = 16,
          width: int = 32, norm: str = "batch", arch: str = "conv",
          hidden: tuple = (200, 200)) -> dict[str, nnx.Module]:
  """``arch="mlp"`` with ``latent_dim=50`` and ``hidden=(200, 200)`` is Burda et al. (2016)'s
  one-stochastic-layer MNIST architecture (425,284 parameters at 28x28)."""
  return {"model": VAE(image_shape, latent_dim, width, norm=norm, arch=arch, hidden=hidden,
                       axis_name=axis_name, dtype=dtype, rngs=rngs)}
