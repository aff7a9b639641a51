"""A LeNet-style CNN classifier: the domain feature extractor for MNIST-like data.

Three stages of ``conv (5x5, 5x5, 3x3; same padding) -> norm -> ReLU -> 2x2 max-pool`` with
``width``, ``2*width`` and ``2*width`` channels, then ``fc(features) -> ReLU -> dropout ->
fc(num_classes)``. The ``features`` layer (after its ReLU, before dropout) is the embedding for
classifier-FID/KID/PRDC; the softmax of the logits serves classifier-IS. At 32x32 inputs with
the defaults it has 221k parameters, which keeps checkpoints (parameters plus Adam's moments)
near 2.7 MB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors
from genjax import parallel
from genjax.models import layers

METHOD = "classification"

_KERNELS = (5, 5, 3)
_he_normal = nnx.initializers.kaiming_normal()


class Classifier(nnx.Module):
  """image (B, H, W, C) -> ``{"logits": (B, num_classes), "features": (B, features)}``."""

  def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int,
               features: int, *, dropout: float = 0.0, norm: str = "batch", axis_name=None,
               dtype=None, rngs: nnx.Rngs):
    h, w, channels = image_shape
    if min(h, w) < 2 ** len(_KERNELS):
      raise ValueError(f"the classifier needs images of at least {2 ** len(_KERNELS)} pixels "
                       f"a side, got {h}x{w}")
    errors.check_choice("norm", norm, layers.NORMS)
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.dropout = dropout
    self.axis_name = axis_name
    self.stages = nnx.List()
    c_in = channels
    for i, k in enumerate(_KERNELS):
      c_out = width * min(2, 2 ** i)
      conv = layers.Conv(c_in, c_out, k, 1, k // 2, use_bias=norm == "none",
                         kernel_init=_he_normal, dtype=dtype, rngs=rngs)
      bn = (layers.BatchNorm(c_out, axis_name=axis_name, dtype=dtype,
                             scale_init=nnx.initializers.ones, rngs=rngs)
            if norm == "batch" else layers.Identity())
      self.stages.append(nnx.List([conv, bn]))
      c_in = c_out
      h, w = h // 2, w // 2
    self.fc = layers.Linear(c_in * h * w, features, kernel_init=_he_normal, dtype=dtype,
                            rngs=rngs)
    self.out = layers.Linear(features, num_classes, kernel_init=nnx.initializers.lecun_normal(),
                             dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> dict[str, jax.Array]:
    """``rng`` switches dropout on (training); without it the forward pass is deterministic."""
    for conv, norm in self.stages:
      x = nnx.max_pool(nnx.relu(norm(conv(x))), (2, 2), (2, 2))
    features = nnx.relu(self.fc(x.reshape(x.shape[0], -1)))
    h = features
    if rng is not None and self.dropout > 0:
      keep = 1.0 - self.dropout
      u = parallel.batch_random(jax.random.uniform, rng, h.shape, self.axis_name)
      h = jnp.where(u < keep, h / keep, 0).astype(h.dtype)
    return {"logits": self.out(h), "features": features}


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          num_classes: int = 10, width: int = 32, features: int = 128, dropout: float = 0.0,
          norm: str = "batch") -> dict[str, nnx.Module]:
  """The family's one network, ``model``."""
  return {"model": Classifier(image_shape, num_classes, width, features, dropout=dropout,
                              norm=norm, axis_name=axis_name, dtype=dtype, rngs=rngs)}
