"""SGAN: the semi-supervised GAN of Salimans et al. (2016, "Improved techniques"), MNIST networks.

The discriminator is a (K+1)-class classifier with the fake class's logit fixed at 0: its K class
logits ``l`` give the real/fake logit ``logsumexp(l)`` (so ``D(x) = Z(x) / (Z(x) + 1)``). It is a
weight-normalised MLP ``ndf, ndf/2, ndf/4, ndf/4, ndf/4`` (1000-500-250-250-250 by default) with
ReLUs and Gaussian noise (sigma 0.3 on the input, 0.5 after every hidden layer) while training;
its last hidden layer is the feature vector the generator matches (feature matching). The
generator is ``z -> ngf -> ngf -> H*W*C`` (500-500-784) with BatchNorm and softplus, and a
weight-normalised sigmoid output, so images are in [0, 1] (set ``dataset.value_range=(0, 1)``).

With ``data_init`` (the paper's code) every weight-normalised discriminator layer is initialised from the
first training batch to standardised outputs, and the discriminator's hidden layers keep that
per-unit scale fixed (only the output layer's scale trains), so the Gaussian noise keeps its
weight relative to the signal.

The classifier is trained on the labelled subset by ``config.method.labelled_per_class``;
``genjax.cli.gan_accuracy`` reports its test accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import parallel
from genjax.models import layers
from genjax.models.spec import Spec

METHOD = "adversarial"


class Generator(nnx.Module):
  """z (B, latent_dim) -> image (B, H, W, C) in [0, 1]."""

  def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], width: int, *,
               axis_name=None, dtype=None, rngs: nnx.Rngs):
    self.spec = Spec(latent_dim=latent_dim)
    self.image_shape = tuple(image_shape)
    out = image_shape[0] * image_shape[1] * image_shape[2]
    self.fc1 = layers.Linear(latent_dim, width, kernel_init=nnx.initializers.lecun_normal(),
                             dtype=dtype, rngs=rngs)
    self.bn1 = layers.BatchNorm(width, axis_name=axis_name, dtype=dtype,
                                scale_init=nnx.initializers.ones, rngs=rngs)
    self.fc2 = layers.Linear(width, width, kernel_init=nnx.initializers.lecun_normal(),
                             dtype=dtype, rngs=rngs)
    self.bn2 = layers.BatchNorm(width, axis_name=axis_name, dtype=dtype,
                                scale_init=nnx.initializers.ones, rngs=rngs)
    self.out = layers.WeightNormLinear(width, out, dtype=dtype, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    h = jax.nn.softplus(self.bn1(self.fc1(z)))
    h = jax.nn.softplus(self.bn2(self.fc2(h)))
    return jax.nn.sigmoid(self.out(h)).reshape(z.shape[0], *self.image_shape)


class Discriminator(nnx.Module):
  """image -> ``{"logit": logsumexp(class_logits), "class_logits": (B, K), "features"}``.

  ``rng`` switches the Gaussian noise layers on (training); without it the pass is deterministic.
  The noise is drawn for the global batch (``parallel.batch_random``), so a step does not depend on
  the device count.
  """

  def __init__(self, image_shape: tuple[int, int, int], width: int, num_classes: int, *,
               input_noise: float = 0.3, hidden_noise: float = 0.5, data_init: bool = True,
               axis_name=None, dtype=None, rngs: nnx.Rngs):
    self.num_classes, self.axis_name = num_classes, axis_name
    self.spec = Spec(takes=("rng",), returns=("logit", "class_logits", "features"))
    self.input_noise, self.hidden_noise = input_noise, hidden_noise
    widths = [width, width // 2, width // 4, width // 4, width // 4]
    if min(widths) < 1:
      raise ValueError(f"the SGAN discriminator needs ndf >= 4, got {width}")
    c_in = image_shape[0] * image_shape[1] * image_shape[2]
    self.hidden = nnx.List()
    for w in widths:
      self.hidden.append(layers.WeightNormLinear(c_in, w, data_init=data_init,
                                                 train_scale=not data_init, axis_name=axis_name,
                                                 dtype=dtype, rngs=rngs))
      c_in = w
    self.out = layers.WeightNormLinear(c_in, num_classes, data_init=data_init,
                                       axis_name=axis_name, dtype=dtype, rngs=rngs)

  def _noise(self, h: jax.Array, sigma: float, rng, i: int) -> jax.Array:
    if rng is None or not sigma:
      return h
    eps = parallel.batch_random(jax.random.normal, jax.random.fold_in(rng, i), h.shape,
                                self.axis_name)
    return h + sigma * eps.astype(h.dtype)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> dict[str, jax.Array]:
    h = self._noise(x.reshape(x.shape[0], -1), self.input_noise, rng, 0)
    features = h
    for i, layer in enumerate(self.hidden):
      features = nnx.relu(layer(h))
      h = self._noise(features, self.hidden_noise, rng, i + 1)
    logits = self.out(h)
    return {"logit": jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1),
            "class_logits": logits, "features": features}


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          latent_dim: int = 100, ngf: int = 500, ndf: int = 1000, num_classes: int = 10,
          input_noise: float = 0.3, hidden_noise: float = 0.5,
          data_init: bool = True) -> dict[str, nnx.Module]:
  return {
      "generator": Generator(latent_dim, image_shape, ngf, axis_name=axis_name, dtype=dtype,
                             rngs=rngs),
      "discriminator": Discriminator(image_shape, ndf, num_classes, input_noise=input_noise,
                                     hidden_noise=hidden_noise, data_init=data_init,
                                     axis_name=axis_name, dtype=dtype, rngs=rngs),
  }
