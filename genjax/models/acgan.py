"""AC-GAN (Odena et al. 2017): the generator takes the class as a one-hot vector next to the
noise; the discriminator has an auxiliary classifier head, and both networks also minimise the
cross-entropy of that head (on real and generated images for D, on generated ones for G,
weighted by ``config.method.aux_weight``).
"""

from __future__ import annotations

from flax import nnx

from genjax.models import gan_nets

METHOD = "adversarial"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 100, ngf: int = 64, ndf: int = 64, num_classes: int = 10,
          norm: str = "batch") -> dict[str, nnx.Module]:
  size, _, channels = image_shape
  return {
      "generator": gan_nets.Generator(latent_dim, channels, size, ngf, conditioning="concat",
                                      num_classes=num_classes, axis_name=axis_name,
                                      dtype=dtype, rngs=rngs),
      "discriminator": gan_nets.Discriminator(channels, size, ndf, norm=norm, head="classifier",
                                              num_classes=num_classes, axis_name=axis_name,
                                              dtype=dtype, rngs=rngs),
  }
