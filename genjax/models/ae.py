"""Convolutional autoencoder (plain and denoising: the corruption is a training option).

Encoder and decoder are the DCGAN discriminator/generator bodies (``layers.ConvEncoder`` /
``layers.ConvDecoder``) with a ``latent_dim`` bottleneck. The decoder returns pre-activations:
Bernoulli logits or Gaussian means, as the method's likelihood reads them.
"""

from __future__ import annotations

import jax
from flax import nnx

from genjax.models import layers

METHOD = "autoencoding"


class Autoencoder(nnx.Module):
  """Deterministic code ``z = encode(x)``; subclasses may read the encoder output differently."""

  CODE_WIDTH = 1  # encoder outputs per latent dimension

  def __init__(self, image_shape, latent_dim: int, width: int, *, norm: str = "batch",
               axis_name=None, dtype=None, rngs: nnx.Rngs):
    size, _, channels = image_shape
    self.latent_dim = latent_dim
    self.axis_name = axis_name
    self.encoder = layers.ConvEncoder(channels, self.CODE_WIDTH * latent_dim, size, width,
                                      norm=norm, out_bias=True, axis_name=axis_name, dtype=dtype,
                                      rngs=rngs)
    self.decoder = layers.ConvDecoder(latent_dim, channels, size, width, norm=norm,
                                      out_bias=True, axis_name=axis_name, dtype=dtype, rngs=rngs)

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    return self.decoder(z)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> dict[str, jax.Array]:
    del rng  # deterministic
    z = self.encode(x)
    return {"recon": self.decode(z), "z": z}


def build(image_shape, *, rngs: nnx.Rngs, axis_name=None, dtype=None, latent_dim: int = 32,
          width: int = 32, norm: str = "batch") -> dict[str, nnx.Module]:
  return {"model": Autoencoder(image_shape, latent_dim, width, norm=norm, axis_name=axis_name,
                               dtype=dtype, rngs=rngs)}
