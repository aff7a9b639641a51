"""cGAN with a projection discriminator (Miyato & Koyama 2018).

The generator is conditioned through class-conditional BatchNorm (a per-class scale and shift
after every normalisation); the spectrally normalised discriminator scores
``psi(phi(x)) + <embed(y), phi(x)>``. Trained with the hinge loss.
"""

from __future__ import annotations

from flax import nnx

from genjax.models import gan_nets

METHOD = "adversarial"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 128, ngf: int = 64, ndf: int = 64,
          num_classes: int = 10) -> dict[str, nnx.Module]:
  size, _, channels = image_shape
  return {
      "generator": gan_nets.Generator(latent_dim, channels, size, ngf, conditioning="cbn",
                                      num_classes=num_classes, axis_name=axis_name,
                                      dtype=dtype, rngs=rngs),
      "discriminator": gan_nets.Discriminator(channels, size, ndf, norm="none", spectral=True,
                                              head="projection", num_classes=num_classes,
                                              axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
