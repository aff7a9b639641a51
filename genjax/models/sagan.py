"""SAGAN (Zhang et al. 2019): self-attention at ``attention_size`` in both networks, spectral
normalisation in both, hinge loss and two time-scale learning rates (see the configs).

At 32x32 with ``attention_size=16`` the generator attends after its 8->16 stage and the
discriminator after its first (32->16) convolution.
"""

from __future__ import annotations

from flax import nnx

from genjax.models import gan_nets

METHOD = "adversarial"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 128, ngf: int = 64, ndf: int = 64,
          attention_size: int = 16) -> dict[str, nnx.Module]:
  size, _, channels = image_shape
  if not 4 <= attention_size < size:
    raise ValueError(f"attention_size must be a feature-map size between 4 and {size // 2}, got "
                     f"{attention_size}")
  return {
      "generator": gan_nets.Generator(latent_dim, channels, size, ngf, norm="batch",
                                      spectral=True, attention_size=attention_size,
                                      axis_name=axis_name, dtype=dtype, rngs=rngs),
      "discriminator": gan_nets.Discriminator(channels, size, ndf, norm="none", spectral=True,
                                              attention_size=attention_size,
                                              axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
