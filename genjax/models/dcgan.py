"""DCGAN (Radford et al. 2016), exactly the pytorch/examples architecture.

At ``image_size=64`` with ``latent_dim=100``, ``ngf=ndf=64`` and 3 channels the generator has
3,576,704 and the discriminator 2,765,568 parameters, as in PyTorch. Other sizes (32 for
MNIST-sized data padded 28->32) drop or add one stride-2 stage per factor of two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax.models import layers
from genjax.models.spec import Spec

METHOD = "adversarial"


class Generator(nnx.Module):
  """z (B, latent_dim) -> image (B, S, S, C) in [-1, 1]."""

  def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, *,
               norm: str = "batch", axis_name=None, dtype=None, conv_transpose: str = "phase",
               rngs: nnx.Rngs):
    self.spec = Spec(latent_dim=latent_dim)
    self.body = layers.ConvDecoder(latent_dim, channels, image_size, width, norm=norm,
                                   axis_name=axis_name, dtype=dtype,
                                   conv_transpose=conv_transpose, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    return jnp.tanh(self.body(z))


class Discriminator(nnx.Module):
  """image (B, S, S, C) -> ``{"logit": (B,), "features": (B, 16 * 2^(n-1) ndf)}``: the
  real/fake logit (the sigmoid lives in the loss) and the last 4x4 feature map, flattened (for
  feature matching and linear probes)."""

  def __init__(self, channels: int, image_size: int, width: int, *, norm: str = "batch",
               axis_name=None, dtype=None, rngs: nnx.Rngs):
    self.spec = Spec(returns=("logit", "features"))
    self.body = layers.ConvEncoder(channels, 1, image_size, width, norm=norm,
                                   axis_name=axis_name, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    h = self.body.body(x)
    return {"logit": self.body.out(h)[:, 0, 0, 0], "features": h.reshape(h.shape[0], -1)}


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 100, ngf: int = 64, ndf: int = 64, norm: str = "batch",
          d_norm: str = "", conv_transpose: str = "phase") -> dict[str, nnx.Module]:
  """The networks of the family, by role. ``norm``: both networks' norm, ``d_norm`` the
  discriminator's where it differs (e.g. WGAN-GP's critic: 'none'; "" = ``norm``).
  ``conv_transpose``: 'phase' (fast) or 'lax' (the reference formulation, for comparisons;
  same parameters)."""
  size, _, channels = image_shape
  return {
      "generator": Generator(latent_dim, channels, size, ngf, norm=norm, axis_name=axis_name,
                             dtype=dtype, conv_transpose=conv_transpose, rngs=rngs),
      "discriminator": Discriminator(channels, size, ndf, norm=d_norm or norm,
                                     axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
