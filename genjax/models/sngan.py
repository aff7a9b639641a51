"""SNGAN (Miyato et al. 2018): a DCGAN-style generator with BatchNorm against a discriminator
whose every layer is spectrally normalised (no BatchNorm); trained with the hinge loss. One power iteration per training forward pass, as in the paper.

The power-iteration vectors are ``layers.PowerIteration`` variables: part of the train state's
buffers, so they are checkpointed and restored with the weights.
"""

from __future__ import annotations

from flax import nnx

from genjax.models import gan_nets

METHOD = "adversarial"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 128, ngf: int = 64, ndf: int = 64) -> dict[str, nnx.Module]:
  size, _, channels = image_shape
  return {
      "generator": gan_nets.Generator(latent_dim, channels, size, ngf, norm="batch",
                                      axis_name=axis_name, dtype=dtype, rngs=rngs),
      "discriminator": gan_nets.Discriminator(channels, size, ndf, norm="none", spectral=True,
                                              axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
