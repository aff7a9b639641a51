"""InfoGAN (Chen et al. 2016): the generator's input is noise plus one categorical code with
``num_categorical`` values and ``num_continuous`` U(-1, 1) codes; a Q head on the
discriminator's features predicts the codes of generated images, and both networks maximise the
variational lower bound on the mutual information between codes and images
(``config.method.info_weight`` / ``info_continuous_weight``).

On MNIST the categorical code, read back by Q, clusters the digits (``genjax.gan_accuracy``).
"""

from __future__ import annotations

from flax import nnx

from genjax.models import gan_nets

METHOD = "adversarial"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 62, ngf: int = 64, ndf: int = 64, num_categorical: int = 10,
          num_continuous: int = 2, q_width: int = 128) -> dict[str, nnx.Module]:
  size, _, channels = image_shape
  if num_categorical == 1 or num_categorical < 0 or num_continuous < 0:
    raise ValueError(f"InfoGAN needs num_categorical of 0 or >= 2 and num_continuous >= 0, got "
                     f"{num_categorical}, {num_continuous}")
  return {
      "generator": gan_nets.Generator(latent_dim, channels, size, ngf,
                                      num_categorical=num_categorical,
                                      num_continuous=num_continuous, axis_name=axis_name,
                                      dtype=dtype, rngs=rngs),
      "discriminator": gan_nets.Discriminator(channels, size, ndf,
                                              num_categorical=num_categorical,
                                              num_continuous=num_continuous, q_width=q_width,
                                              axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
