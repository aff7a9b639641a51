"""f-AnoGAN's encoder (Schlegl et al., Medical Image Analysis 2019): an image into the latent
space of a GAN trained on normal data only. The GAN's generator and discriminator are frozen
networks of the method (:mod:`genjax.methods.fanogan`); this family builds the encoder alone.

The encoder mirrors the WGAN-GP critic it is paired with (``layers.ConvEncoder``, by default
without BatchNorm, so every conv has a bias), its last conv giving the ``latent_dim`` code.
``output="linear"`` codes a Gaussian latent (genjax's GANs draw ``z ~ N(0, 1)`` by default);
``"tanh"`` bounds the code to (-1, 1), for a generator of uniform noise (``method.noise``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors
from genjax.errors import ConfigError
from genjax.models import layers
from genjax.models.spec import Spec

METHOD = "fanogan"
OUTPUTS = ("linear", "tanh")


class Encoder(nnx.Module):
  """image (B, S, S, C) -> latent code (B, latent_dim)."""

  def __init__(self, image_shape, latent_dim: int, width: int, *, norm: str = "none",
               output: str = "linear", axis_name=None, dtype=None, rngs: nnx.Rngs):
    errors.check_choice("model.output", output, OUTPUTS, ConfigError)
    size, _, channels = image_shape
    self.spec = Spec()
    self.latent_dim, self.output = latent_dim, output
    self.body = layers.ConvEncoder(channels, latent_dim, size, width, norm=norm, out_bias=True,
                                   axis_name=axis_name, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    z = self.body(x)
    return jnp.tanh(z) if self.output == "tanh" else z


def build(image_shape, *, rngs: nnx.Rngs, axis_name=None, dtype=None, latent_dim: int = 100,
          width: int = 32, norm: str = "none", output: str = "linear") -> dict[str, nnx.Module]:
  return {"encoder": Encoder(image_shape, latent_dim, width, norm=norm, output=output,
                             axis_name=axis_name, dtype=dtype, rngs=rngs)}
