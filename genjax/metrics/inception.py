"""The FID InceptionV3 in Flax NNX, and its weights.

:class:`InceptionV3` is the network of pytorch-fid (``fid_inception_v3``) and TTUR, NHWC:
torchvision's InceptionV3 topology with the FID blocks (the 3x3 average pools of the A, C and
first E blocks exclude the padding from their counts, as TensorFlow's do; the last E block
max-pools its pool branch), BatchNorm with eps=0.001 in inference mode and a 1008-way ``fc``.
:func:`inception_inputs` prepares images as pytorch-fid does: images in [0, 1] are resized
bilinearly to 299x299 (``F.interpolate(mode='bilinear', align_corners=False)``, no
antialiasing) and scaled to [-1, 1].

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a PyTorch ``state_dict``) is
read without PyTorch (:func:`genjax.torch_weights.read_state_dict`, re-exported here as
``read_torch_state_dict``), or from an ``.npz`` written by :func:`convert_inception` (the same
keys and PyTorch layouts). The extractor that runs it over batches is
:class:`genjax.metrics.features.InceptionFeatures`.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import errors
from genjax.models import layers
from genjax.errors import CheckpointError
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
