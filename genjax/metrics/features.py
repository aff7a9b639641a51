"""Feature extractors for sample-quality metrics: the FID InceptionV3 and domain classifiers.

:class:`InceptionFeatures` runs :class:`genjax.metrics.inception.InceptionV3` (the network of
pytorch-fid, and its weights) as pytorch-fid feeds it and returns the 2048-d ``pool3`` features
(FID, KID, PRDC) and the 1008 ``logits`` (their softmax for the Inception Score).

:class:`ClassifierFeatures` runs a ``classifier`` trained by genjax (``genjax.cli.train``;
restored by :func:`genjax.runs.load_classifier`) and returns ``features`` (the penultimate layer)
and ``logits``, for classifier-FID/KID/IS on MNIST-like data.

Every extractor runs jitted with the batch split over the local devices and the weights
replicated; calls take numpy or jax arrays and return host numpy arrays (for a jax array that
spans several processes: the outputs of this process's rows, for the caller to gather).
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import kernels
from genjax import parallel
from genjax.models import layers
from genjax.errors import ConfigError
from genjax.metrics.inception import InceptionV3
from genjax.metrics.inception import inception_from_weights
from genjax.metrics.inception import inception_inputs
from genjax.metrics.inception import load_inception


def _local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in order."""
  shards = {}
  for shard in x.addressable_shards:
    shards.setdefault(shard.index[0].start or 0, shard.data)
  return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)])


def _as_unit_float(images, channels: tuple[int, ...]) -> np.ndarray:
  """Host NHWC images as float32 in [0, 1] (uint8 is divided by 255).

  A jax array spanning several processes contributes this process's rows only.
  """
  if isinstance(images, jax.Array) and not images.is_fully_addressable:
    images = _local_rows(images)
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] not in channels:
    raise ConfigError(f"images must be [batch, height, width, channels] with channels in "
                      f"{channels}, got shape {x.shape}")
  return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


class InceptionFeatures:
  """Images in [0, 1] -> ``{"pool3": [B, 2048], "logits": [B, 1008]}`` (numpy, float32).

  Args:
    source: An :class:`InceptionV3`, a PyTorch-keyed weight mapping, or a weight file path
      (pytorch-fid's ``.pth`` or a converted ``.npz``).
    batch_size: Images per compiled forward pass (split over ``devices``).
    devices: Default: all local devices (all devices in a single process).
    conv_backend: The kernels of its convolutions (default XLA's).
  """

  def __init__(self, source: InceptionV3 | Mapping[str, np.ndarray] | str | os.PathLike, *,
               batch_size: int = 64, devices: list[jax.Device] | None = None,
               conv_backend: kernels.ConvBackend = kernels.XLA):
    if isinstance(source, (str, os.PathLike)):
      source = load_inception(source)
    elif not isinstance(source, InceptionV3):
      source = inception_from_weights(source)
    graphdef, state = nnx.split(layers.on_conv_backend(source, conv_backend))

    def forward(state, x):
      return nnx.merge(graphdef, state)(x)

    self._apply = parallel.BatchedApply(forward, state, batch_size=batch_size, devices=devices,
                               preprocess=inception_inputs, key=("inception", graphdef))

  def __call__(self, images) -> dict[str, np.ndarray]:
    """``images``: NHWC, 1 or 3 channels, float in [0, 1] or uint8, any size."""
    return self._apply(_as_unit_float(images, (1, 3)))


# --- genjax-trained classifiers ----------------------------------------------------------------

def classifier_inputs(method, x01: jax.Array) -> jax.Array:
  """Images in [0, 1] as the classifier ``method`` was trained on them: in its ``value_range``,
  at its size the way its training data got there (centred padding with the background value,
  or bilinear resizing), grayscale repeated for an RGB model and RGB reduced to its luma for a
  grayscale one (e.g. colourised digits scored by an MNIST classifier). Differentiable."""
  image_shape = method.image_shape
  lo, hi = method.value_range
  size, resize = image_shape[:2], method.config.dataset.resize
  x = x01 * (hi - lo) + lo
  if x.shape[-1] == 1 and image_shape[-1] == 3:
    x = jnp.repeat(x, 3, axis=-1)
  elif x.shape[-1] == 3 and image_shape[-1] == 1:  # ITU-R 601 luma, as PIL's "L"
    x = jnp.tensordot(x, jnp.asarray([0.299, 0.587, 0.114], x.dtype), axes=1)[..., None]
  h, w = x.shape[1:3]
  if (h, w) != size:
    if resize == "pad" and h <= size[0] and w <= size[1]:
      top, left = (size[0] - h) // 2, (size[1] - w) // 2
      x = jnp.pad(x, ((0, 0), (top, size[0] - h - top), (left, size[1] - w - left), (0, 0)),
                  constant_values=lo)
    else:
      x = jnp.clip(jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), "bilinear"), lo, hi)
  return x


class ClassifierFeatures:
  """A trained ``classifier`` as ``images01 -> {"features": [B, F], "logits": [B, C]}``.

  Images in [0, 1] (or uint8) are brought to the classifier's inputs by
  :func:`classifier_inputs`.
  """

  def __init__(self, method, state, *, batch_size: int = 500,
               devices: list[jax.Device] | None = None):
    self.image_shape = method.image_shape
    self.num_classes = method.num_classes
    role = method.SAMPLE_NET
    tree = (state.ema.get(role, state.params[role]), state.buffers[role])

    def forward(tree, x01):
      out = method.net(role, *tree, train=False)(classifier_inputs(method, x01))
      return {k: v.astype(jnp.float32) for k, v in out.items()}

    self._apply = parallel.BatchedApply(forward, tree, batch_size=batch_size, devices=devices)

  def __call__(self, images01) -> dict[str, np.ndarray]:
    return self._apply(_as_unit_float(images01, (1, 3)))
