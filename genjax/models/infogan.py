"""InfoGAN (Chen et al. 2016): the generator's input is noise plus one categorical code with
``num_categorical`` values and ``num_continuous`` U(-1, 1) codes; a Q head on the
discriminator's features predicts the codes of generated images, and both networks maximise the
variational lower bound on the mutual information between codes and images
(``config.method.info_weight`` / ``info_continuous_weight``).

On MNIST the categorical code, read back by Q, clusters the digits (``genjax.cli.gan_accuracy``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors
from genjax.models import gan_nets
from genjax.models import layers
from genjax.models.spec import Spec

METHOD = "adversarial"
ARCHS = ("dcgan", "paper")


class PaperGenerator(nnx.Module):
  """The paper's MNIST generator (table 1): FC 1024, FC 7x7x128 (BatchNorm, ReLU), then
  ``ConvT(128, 64, 4, 2, 1)``, BatchNorm, ReLU and ``ConvT(64, C, 4, 2, 1)``, tanh."""

  def __init__(self, latent_dim: int, channels: int, size: int, num_categorical: int,
               num_continuous: int, *, axis_name=None, dtype=None, rngs: nnx.Rngs):
    if size % 4:
      raise ValueError(f"the paper's InfoGAN needs an image size divisible by 4 (e.g. 28), "
                       f"got {size}")
    self.spec = Spec(latent_dim=latent_dim, num_categorical=num_categorical,
                     num_continuous=num_continuous)
    self.base = size // 4
    bn = lambda c: layers.BatchNorm(c, axis_name=axis_name, dtype=dtype, rngs=rngs)  # pylint: disable=unnecessary-lambda-assignment
    self.fc1 = layers.Linear(latent_dim + num_categorical + num_continuous, 1024, use_bias=False,
                             dtype=dtype, rngs=rngs)
    self.bn1 = bn(1024)
    self.fc2 = layers.Linear(1024, self.base * self.base * 128, use_bias=False, dtype=dtype,
                             rngs=rngs)
    self.bn2 = bn(self.base * self.base * 128)
    self.up1 = layers.ConvTranspose(128, 64, 4, 2, 1, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn3 = bn(64)
    self.up2 = layers.ConvTranspose(64, channels, 4, 2, 1, dtype=dtype, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    h = nnx.relu(self.bn1(self.fc1(z)))
    h = nnx.relu(self.bn2(self.fc2(h))).reshape(z.shape[0], self.base, self.base, 128)
    h = nnx.relu(self.bn3(self.up1(h)))
    return jnp.tanh(self.up2(h))


class PaperDiscriminator(nnx.Module):
  """The paper's MNIST discriminator and Q network: ``Conv(C, 64, 4, 2, 1)``, LeakyReLU(0.1),
  ``Conv(64, 128, 4, 2, 1)``, BatchNorm, LeakyReLU, FC 1024, BatchNorm, LeakyReLU (the shared
  features), then FC 1 (real/fake) and Q: FC 128, BatchNorm, LeakyReLU, FC to the codes."""

  def __init__(self, channels: int, size: int, num_categorical: int, num_continuous: int, *,
               q_width: int = 128, axis_name=None, dtype=None, rngs: nnx.Rngs):
    self.num_categorical = num_categorical
    self.spec = Spec(returns=("logit", "features", "code_logits", "code_mean"))
    bn = lambda c: layers.BatchNorm(c, axis_name=axis_name, dtype=dtype, rngs=rngs)  # pylint: disable=unnecessary-lambda-assignment
    self.conv1 = layers.Conv(channels, 64, 4, 2, 1, dtype=dtype, rngs=rngs)
    self.conv2 = layers.Conv(64, 128, 4, 2, 1, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn2 = bn(128)
    self.fc = layers.Linear((size // 4) ** 2 * 128, 1024, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn3 = bn(1024)
    self.out = layers.Linear(1024, 1, dtype=dtype, rngs=rngs)
    self.q1 = layers.Linear(1024, q_width, use_bias=False, dtype=dtype, rngs=rngs)
    self.q_bn = bn(q_width)
    self.q2 = layers.Linear(q_width, num_categorical + num_continuous, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    h = nnx.leaky_relu(self.conv1(x), 0.1)
    h = nnx.leaky_relu(self.bn2(self.conv2(h)), 0.1)
    phi = nnx.leaky_relu(self.bn3(self.fc(h.reshape(h.shape[0], -1))), 0.1)
    codes = self.q2(nnx.leaky_relu(self.q_bn(self.q1(phi)), 0.1))
    return {"logit": self.out(phi)[:, 0], "features": phi,
            "code_logits": codes[:, :self.num_categorical],
            "code_mean": codes[:, self.num_categorical:]}


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 62, ngf: int = 64, ndf: int = 64, num_categorical: int = 10,
          num_continuous: int = 2, q_width: int = 128, arch: str = "dcgan"
          ) -> dict[str, nnx.Module]:
  """``arch="dcgan"``: the zoo's DCGAN-style networks (width ``ngf``/``ndf``, sizes 4 * 2^n);
  ``"paper"``: the paper's MNIST networks (table 1; ``ngf``/``ndf`` unused, sizes divisible
  by 4, e.g. the native 28)."""
  size, _, channels = image_shape
  if num_categorical == 1 or num_categorical < 0 or num_continuous < 0:
    raise ValueError(f"InfoGAN needs num_categorical of 0 or >= 2 and num_continuous >= 0, got "
                     f"{num_categorical}, {num_continuous}")
  errors.check_choice("InfoGAN arch", arch, ARCHS)
  if arch == "paper":
    return {
        "generator": PaperGenerator(latent_dim, channels, size, num_categorical, num_continuous,
                                    axis_name=axis_name, dtype=dtype, rngs=rngs),
        "discriminator": PaperDiscriminator(channels, size, num_categorical, num_continuous,
                                            q_width=q_width, axis_name=axis_name, dtype=dtype,
                                            rngs=rngs),
    }
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
