"""Autoencoder (plain and denoising: the corruption is a training option).

With ``arch="conv"`` (the default) encoder and decoder are the DCGAN discriminator/generator
bodies (``layers.ConvEncoder`` / ``layers.ConvDecoder``) with a ``latent_dim`` bottleneck; with
``arch="mlp"`` they are fully connected tanh networks of ``hidden`` widths (the decoder's in
reverse), as in Burda et al. (2016)'s MNIST models. The decoder returns pre-activations:
Bernoulli logits or Gaussian means, as the method's likelihood reads them.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from genjax import errors
from genjax.errors import ConfigError
from genjax.models import layers

METHOD = "autoencoding"
ARCHS = ("conv", "mlp")


class Autoencoder(nnx.Module):
  """Deterministic code ``z = encode(x)``; subclasses may read the encoder output differently."""

  CODE_WIDTH = 1  # encoder outputs per latent dimension

  def __init__(self, image_shape, latent_dim: int, width: int, *, norm: str = "batch",
               arch: str = "conv", hidden=(200, 200), axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    errors.check_choice("model.arch", arch, ARCHS, ConfigError)
    size, _, channels = image_shape
    self.latent_dim = latent_dim
    self.axis_name = axis_name
    if arch == "mlp":
      hidden = tuple(int(h) for h in hidden)
      self.encoder = layers.MLP(math.prod(image_shape), hidden, (self.CODE_WIDTH * latent_dim,),
                                dtype=dtype, rngs=rngs)
      self.decoder = layers.MLP(latent_dim, hidden[::-1], image_shape, dtype=dtype, rngs=rngs)
      return
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
          width: int = 32, norm: str = "batch", arch: str = "conv",
          hidden: tuple = (200, 200)) -> dict[str, nnx.Module]:
  return {"model": Autoencoder(image_shape, latent_dim, width, norm=norm, arch=arch,
                               hidden=hidden, axis_name=axis_name, dtype=dtype, rngs=rngs)}
