"""Feature extractors for sample-quality metrics: the FID InceptionV3 and domain classifiers.

:class:`InceptionV3` is the network of pytorch-fid (``fid_inception_v3``) and TTUR in Flax NNX,
NHWC: torchvision's InceptionV3 topology with the FID blocks (the 3x3 average pools of the A, C
and first E blocks exclude the padding from their counts, as TensorFlow's do; the last E block
max-pools its pool branch), BatchNorm with eps=0.001 in inference mode and a 1008-way ``fc``.
:class:`InceptionFeatures` feeds it as pytorch-fid does: images in [0, 1] are resized bilinearly
to 299x299 (``F.interpolate(mode='bilinear', align_corners=False)``, no antialiasing) and
scaled to [-1, 1]; it returns the 2048-d ``pool3`` features (FID, KID, PRDC) and the 1008
``logits`` (their softmax for the Inception Score).

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a PyTorch ``state_dict``) is
read without PyTorch (:func:`genjax.torch_weights.read_state_dict`, re-exported here as
``read_torch_state_dict``), or from an ``.npz`` written by :func:`convert_inception` (the same
keys and PyTorch layouts).

:func:`load_classifier` restores a ``classifier`` trained by genjax (``genjax.main``) as a
callable with ``features`` (the penultimate layer) and ``logits``, for classifier-FID/KID/IS on
MNIST-like data.

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

from genjax import errors
from genjax import kernels
from genjax import parallel
from genjax.models import layers
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.torch_weights import read_state_dict as read_torch_state_dict

Array = jax.Array
INCEPTION_SIZE = 299
POOL3_DIM = 2048
NUM_LOGITS = 1008
_HIGHEST = jax.lax.Precision.HIGHEST


# --- the network -------------------------------------------------------------------------------

class BasicConv(nnx.Module):
  """Conv (no bias) -> BatchNorm(eps=0.001, running statistics) -> ReLU."""

  def __init__(self, in_features: int, out_features: int, kernel_size, stride=1, padding=0, *,
               rngs: nnx.Rngs):
    self.conv = layers.Conv(in_features, out_features, kernel_size, stride, padding,
                            use_bias=False, kernel_init=nnx.initializers.lecun_normal(),
                            precision=_HIGHEST, rngs=rngs)
    self.bn = nnx.BatchNorm(out_features, epsilon=1e-3, use_running_average=True, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return nnx.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: Array) -> Array:
  """3x3/1 average pool over the valid pixels only (``count_include_pad=False``)."""
  return nnx.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x: Array, stride: int = 2, padding: int = 0) -> Array:
  return nnx.max_pool(x, (3, 3), (stride, stride), ((padding, padding), (padding, padding)))


class InceptionA(nnx.Module):
  """35x35 block (Mixed_5b-d): 1x1, 5x5, double 3x3 and average-pool branches."""

  def __init__(self, in_features: int, pool_features: int, *, rngs: nnx.Rngs):
    self.branch1x1 = BasicConv(in_features, 64, 1, rngs=rngs)
    self.branch5x5_1 = BasicConv(in_features, 48, 1, rngs=rngs)
    self.branch5x5_2 = BasicConv(48, 64, 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_features, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv(in_features, pool_features, 1, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return jnp.concatenate([
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_avg_pool_3x3(x)),
    ], axis=-1)


class InceptionB(nnx.Module):
  """35 -> 17 reduction (Mixed_6a)."""

  def __init__(self, in_features: int, *, rngs: nnx.Rngs):
    self.branch3x3 = BasicConv(in_features, 384, 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_features, 64, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(64, 96, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(96, 96, 3, stride=2, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    return jnp.concatenate([
        self.branch3x3(x),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        _max_pool_3x3(x),
    ], axis=-1)


class InceptionC(nnx.Module):
  """17x17 block (Mixed_6b-e) with factorised 7x7 convolutions."""

  def __init__(self, in_features: int, channels_7x7: int, *, rngs: nnx.Rngs):
    c7 = channels_7x7
    self.branch1x1 = BasicConv(in_features, 192, 1, rngs=rngs)
    self.branch7x7_1 = BasicConv(in_features, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv(in_features, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = BasicConv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = BasicConv(in_features, 192, 1, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                 self.branch7x7dbl_5):
      bd = conv(bd)
    return jnp.concatenate([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_3x3(x))],
                           axis=-1)


class InceptionD(nnx.Module):
  """17 -> 8 reduction (Mixed_7a)."""

  def __init__(self, in_features: int, *, rngs: nnx.Rngs):
    self.branch3x3_1 = BasicConv(in_features, 192, 1, rngs=rngs)
    self.branch3x3_2 = BasicConv(192, 320, 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv(in_features, 192, 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = BasicConv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = BasicConv(192, 192, 3, stride=2, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b7 = x
    for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                 self.branch7x7x3_4):
      b7 = conv(b7)
    return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7, _max_pool_3x3(x)],
                           axis=-1)


class InceptionE(nnx.Module):
  """8x8 block (Mixed_7b/c). ``pool``: 'avg' (7b, padding excluded) or 'max' (7c)."""

  def __init__(self, in_features: int, pool: str, *, rngs: nnx.Rngs):
    self.pool = pool
    self.branch1x1 = BasicConv(in_features, 320, 1, rngs=rngs)
    self.branch3x3_1 = BasicConv(in_features, 384, 1, rngs=rngs)
    self.branch3x3_2a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(in_features, 448, 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(448, 384, 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = BasicConv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = BasicConv(in_features, 192, 1, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    b3 = self.branch3x3_1(x)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    pooled = _avg_pool_3x3(x) if self.pool == "avg" else _max_pool_3x3(x, 1, 1)
    return jnp.concatenate([
        self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
        self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), self.branch_pool(pooled),
    ], axis=-1)


class InceptionV3(nnx.Module):
  """The FID Inception network. Attribute names follow PyTorch's so state_dict keys map 1:1.

  ``__call__`` takes NHWC images already scaled to [-1, 1] (299x299 for the reference
  numbers) and returns ``{"pool3": [B, 2048], "logits": [B, 1008]}``.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.Conv2d_1a_3x3 = BasicConv(3, 32, 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv(32, 32, 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv(32, 64, 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv(64, 80, 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv(80, 192, 3, rngs=rngs)
    self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
    self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
    self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
    self.Mixed_6a = InceptionB(288, rngs=rngs)
    self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
    self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
    self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
    self.Mixed_7a = InceptionD(768, rngs=rngs)
    self.Mixed_7b = InceptionE(1280, "avg", rngs=rngs)
    self.Mixed_7c = InceptionE(2048, "max", rngs=rngs)
    self.fc = nnx.Linear(POOL3_DIM, NUM_LOGITS, precision=_HIGHEST, rngs=rngs)

  def __call__(self, x: Array) -> dict[str, Array]:
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool_3x3(x)))
    x = _max_pool_3x3(x)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                  self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                  self.Mixed_7c):
      x = block(x)
    pool3 = jnp.mean(x, axis=(1, 2))
    return {"pool3": pool3, "logits": self.fc(pool3)}


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` weights of PyTorch's bilinear interpolation with ``align_corners=False``.

  Source coordinate ``(o + 0.5) * in / out - 0.5``, clamped at 0, rounded as PyTorch's CPU
  kernel rounds it for float32 images (a float32 scale and one fused multiply-add), so that
  the weights agree to the last bit or two; no antialiasing when downsampling (unlike
  ``jax.image.resize``).
  """
  f32 = np.float32
  scale = np.float64(f32(in_size) / f32(out_size))
  src = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(f32)
  src = np.maximum(src, f32(0))
  lo = np.minimum(src.astype(np.int64), in_size - 1)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo.astype(f32)
  m = np.zeros((out_size, in_size), f32)
  np.add.at(m, (np.arange(out_size), lo), f32(1) - frac)
  np.add.at(m, (np.arange(out_size), hi), frac)
  return m


def resize_bilinear(x: Array, size: tuple[int, int]) -> Array:
  """NHWC bilinear resize with PyTorch's ``align_corners=False`` semantics (no antialiasing)."""
  h, w = x.shape[1:3]
  if (h, w) == tuple(size):
    return x
  my, mx = bilinear_matrix(h, size[0]), bilinear_matrix(w, size[1])
  return jnp.einsum("oh,bhwc,pw->bopc", my, x, mx, precision=_HIGHEST)


def inception_inputs(images01: Array) -> Array:
  """[0, 1] NHWC images (1 or 3 channels) -> 299x299x3 in [-1, 1], as pytorch-fid feeds them."""
  x = images01.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = resize_bilinear(x, (INCEPTION_SIZE, INCEPTION_SIZE))
  return 2.0 * x - 1.0


# --- Inception weights -------------------------------------------------------------------------

_LEAF_KEYS = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var",
              "kernel": "weight"}


def _torch_key(path: tuple) -> str:
  """PyTorch state_dict key of an NNX state path, e.g. Mixed_5b.branch1x1.bn.running_mean."""
  *modules, leaf = (str(p) for p in path)
  return ".".join(modules + [_LEAF_KEYS[leaf]])


def _to_nnx(w: np.ndarray) -> np.ndarray:
  """PyTorch layout -> NNX: Conv2d (O, I, kh, kw) -> HWIO, Linear (out, in) -> (in, out)."""
  return np.transpose(w, (2, 3, 1, 0)) if w.ndim == 4 else (w.T if w.ndim == 2 else w)


def _to_torch(w: np.ndarray) -> np.ndarray:
  return np.transpose(w, (3, 2, 0, 1)) if w.ndim == 4 else (w.T if w.ndim == 2 else w)


def inception_from_weights(weights: Mapping[str, np.ndarray], source: str = "weights"
                           ) -> InceptionV3:
  """An :class:`InceptionV3` holding PyTorch-keyed weights (pytorch-fid's ``state_dict``).

  ``num_batches_tracked`` entries are ignored; any other missing, unexpected or misshapen key
  is an error.

  Raises:
    CheckpointError: One line naming ``source`` and the first problem.
  """
  graphdef, state = nnx.split(nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0))))
  expected, entries = set(), []
  for path, var in nnx.to_flat_state(state):
    key = _torch_key(path)
    expected.add(key)
    if key not in weights:
      raise CheckpointError(f"Inception weights {source}: missing key {key!r}")
    value = np.asarray(weights[key])
    want = _to_torch(np.empty(var.shape, np.bool_)).shape
    if value.shape != want:
      raise CheckpointError(f"Inception weights {source}: {key} has shape {value.shape}, "
                            f"expected {want}")
    entries.append((path, var.replace(np.ascontiguousarray(_to_nnx(value), np.float32))))
  extra = sorted(k for k in weights if k not in expected and not k.endswith("num_batches_tracked"))
  if extra:
    raise CheckpointError(f"Inception weights {source}: unexpected key {extra[0]!r}")
  return nnx.merge(graphdef, nnx.from_flat_state(entries))


def inception_state_dict(model: InceptionV3) -> dict[str, np.ndarray]:
  """The PyTorch-keyed, PyTorch-layout weights of ``model`` (inverse of the above)."""
  return {_torch_key(path): np.ascontiguousarray(_to_torch(np.asarray(var[...])))
          for path, var in nnx.to_flat_state(nnx.state(model))}


def load_inception_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """``{PyTorch key: array}`` from pytorch-fid's ``.pth`` or an ``.npz`` of the same keys."""
  path = os.fspath(path)
  if path.endswith(".npz"):
    if not os.path.isfile(path):
      raise CheckpointError(f"cannot read {path}: no such file")
    try:
      with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"cannot read {path} as an .npz file: {errors.first_line(e)}") from None
  return read_torch_state_dict(path)


def load_inception(path: str | os.PathLike) -> InceptionV3:
  """The FID Inception with weights from ``path`` (``.pth`` state_dict or converted ``.npz``).

  Raises:
    CheckpointError: An unreadable file, or missing/unexpected keys or wrong shapes (one line).
  """
  return inception_from_weights(load_inception_weights(path), os.fspath(path))


def convert_inception(pth: str | os.PathLike, npz: str | os.PathLike) -> None:
  """Checks pytorch-fid's ``.pth`` against the network and writes its weights as ``.npz``."""
  weights = load_inception_weights(pth)
  inception_from_weights(weights, os.fspath(pth))  # validate before writing anything
  weights = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
  npz = os.fspath(npz)
  os.makedirs(os.path.dirname(os.path.abspath(npz)), exist_ok=True)
  np.savez(npz, **weights)


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
