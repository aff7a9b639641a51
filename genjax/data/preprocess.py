"""On-device preprocessing: pure JAX functions meant to run inside the jitted train step.

Configuration arguments (value ranges, sizes, kinds) are static Python values; ``level`` may be
a traced scalar. Randomness comes only from the explicit ``rng`` key.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from genjax import errors
from genjax.errors import ConfigError
from genjax.parallel import batch_random

Range = tuple[float, float]
RESIZE_MODES = ("pad", "resize")
CORRUPTIONS = ("none", "gaussian", "salt_pepper", "mask", "dropout")


def _check_range(value_range: Range) -> tuple[float, float]:
  lo, hi = (float(v) for v in value_range)
  if not lo < hi:
    raise ConfigError(f"value_range must be (lo, hi) with lo < hi, got {tuple(value_range)}")
  return lo, hi


def to_float(images: jax.Array, *, value_range: Range = (-1.0, 1.0),
             image_size: int | tuple[int, int] | None = None, resize: str = "pad") -> jax.Array:
  """Converts uint8 NHWC images to float32 in ``value_range``, optionally changing their size.

  Args:
    images: uint8 ``[..., H, W, C]``.
    value_range: ``(lo, hi)``; 0 maps to ``lo`` and 255 to ``hi``.
    image_size: Target size (int for square, or ``(height, width)``); None keeps the size.
    resize: ``'pad'`` centres the image on a background of 0 (so the padding is ``lo``; odd
      extra pixels go to the bottom/right), ``'resize'`` rescales with bilinear interpolation.

  Returns:
    float32 ``[..., H', W', C]``.

  Raises:
    ConfigError: Unknown ``resize`` mode, bad range, or padding to a smaller size.
  """
  lo, hi = _check_range(value_range)
  errors.check_choice("resize mode", resize, RESIZE_MODES, ConfigError, listing="valid modes")
  h, w = images.shape[-3], images.shape[-2]
  if image_size is None:
    th, tw = h, w
  elif isinstance(image_size, int):
    th, tw = image_size, image_size
  else:
    th, tw = (int(s) for s in image_size)
  if resize == "pad" and (th, tw) != (h, w):
    if th < h or tw < w:
      raise ConfigError(f"cannot pad images of size {h}x{w} to the smaller size {th}x{tw}; use "
                        f"resize='resize' or a larger image_size")
    pad = [(0, 0)] * (images.ndim - 3)
    pad += [((th - h) // 2, th - h - (th - h) // 2), ((tw - w) // 2, tw - w - (tw - w) // 2),
            (0, 0)]
    images = jnp.pad(images, pad)
  x = jnp.asarray(images, jnp.float32) * ((hi - lo) / 255.0) + lo
  if resize == "resize" and (th, tw) != (h, w):
    x = jax.image.resize(x, (*x.shape[:-3], th, tw, x.shape[-1]), "bilinear")
    x = jnp.clip(x, lo, hi)
  return x


def binarize(x01: jax.Array, rng: jax.Array, axis_name: str | None = None) -> jax.Array:
  """Dynamic binarisation: an independent Bernoulli(x) sample per element of ``x01`` in [0, 1].

  Returns 0/1 values with the dtype of ``x01``. ``axis_name``: see :func:`corrupt`.
  """
  u = batch_random(jax.random.uniform, rng, x01.shape, axis_name)
  return (u < x01).astype(x01.dtype)


def corrupt(x: jax.Array, rng: jax.Array, *, kind: str, level: float | jax.Array,
            value_range: Range = (-1.0, 1.0), axis_name: str | None = None) -> jax.Array:
  """Corrupts NHWC images in ``value_range`` for denoising training.

  Under ``jax.pmap`` pass the ``axis_name``: the noise is then drawn for the global batch and
  sliced (``parallel.batch_random``), so it does not depend on the number of devices.

  Kinds:
    * ``'none'``: identity.
    * ``'gaussian'``: adds N(0, (level * (hi - lo))^2) noise and clips to the range.
    * ``'salt_pepper'``: each pixel (all its channels) independently, with probability
      ``level``, becomes ``lo`` or ``hi`` with equal chance.
    * ``'mask'``: per image, a random square patch of side ``round(level * min(H, W))`` lying
      fully inside the image is set to ``lo`` (cutout).
    * ``'dropout'``: each pixel (all its channels) independently, with probability ``level``,
      is set to ``lo``.

  Raises:
    ConfigError: Unknown kind, or a static ``level`` outside its valid range.
  """
  errors.check_choice("corruption kind", kind, CORRUPTIONS, ConfigError, listing="valid kinds")
  lo, hi = _check_range(value_range)
  if isinstance(level, (int, float)):
    limit = float("inf") if kind == "gaussian" else 1.0
    if not 0.0 <= level <= limit:
      raise ConfigError(f"corruption level for {kind!r} must be in [0, {limit}], got {level}")
  if kind == "none":
    return x
  pixel_shape = (*x.shape[:-1], 1)
  rand = functools.partial(batch_random, axis_name=axis_name)
  if kind == "gaussian":
    noise = rand(jax.random.normal, rng, x.shape, dtype=x.dtype) * (level * (hi - lo))
    return jnp.clip(x + noise, lo, hi)
  if kind == "salt_pepper":
    hit_key, salt_key = jax.random.split(rng)
    hit = rand(jax.random.uniform, hit_key, pixel_shape) < level
    salt = rand(jax.random.uniform, salt_key, pixel_shape) < 0.5
    return jnp.where(hit, jnp.where(salt, hi, lo), x).astype(x.dtype)
  if kind == "dropout":
    hit = rand(jax.random.uniform, rng, pixel_shape) < level
    return jnp.where(hit, lo, x).astype(x.dtype)
  # kind == "mask"
  h, w = x.shape[-3], x.shape[-2]
  side = jnp.round(level * min(h, w)).astype(jnp.int32)
  batch_shape = x.shape[:-3]
  row_key, col_key = jax.random.split(rng)
  top = rand(jax.random.randint, row_key, (*batch_shape, 1, 1), minval=0, maxval=h - side + 1)
  left = rand(jax.random.randint, col_key, (*batch_shape, 1, 1), minval=0, maxval=w - side + 1)
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
  return jnp.where(inside[..., None], lo, x).astype(x.dtype)


def random_crop_flip(images: dict[str, jax.Array], groups, *, size: int | None, flip: bool,
                     rng: jax.Array, axis_name: str | None = None) -> dict[str, jax.Array]:
  """The reference's random crop to ``size`` x ``size`` (None: no crop) and horizontal flip
  (with probability 1/2), per example, on NHWC images.

  Images of one shuffle group (``groups``: tuples of keys; the keys in none are left alone)
  are the same examples and share their crop and flip, as a pix2pix pair does; groups (unpaired
  domains) draw their own. The draws are per global batch (``axis_name``, see :func:`corrupt`).
  """
  out = dict(images)
  for g, keys in enumerate(groups):
    keys = [k for k in keys if k in images and images[k].ndim == 4]
    if not keys:
      continue
    n, h, w = images[keys[0]].shape[:3]
    key = jax.random.fold_in(rng, g)
    if size is not None and (h, w) != (size, size):
      if size > min(h, w):
        raise ConfigError(f"cannot crop {h}x{w} images to {size}x{size}: set "
                          f"--config.dataset.crop_size <= {min(h, w)} or a larger load_size")
      top = batch_random(jax.random.randint, jax.random.fold_in(key, 0), (n,), axis_name,
                         minval=0, maxval=h - size + 1)
      left = batch_random(jax.random.randint, jax.random.fold_in(key, 1), (n,), axis_name,
                          minval=0, maxval=w - size + 1)
      crop = jax.vmap(lambda x, t, l: jax.lax.dynamic_slice(x, (t, l, 0),
                                                            (size, size, x.shape[-1])))
      for k in keys:
        out[k] = crop(out[k], top, left)
    if flip:
      flips = batch_random(lambda k, shape: jax.random.bernoulli(k, 0.5, shape),
                           jax.random.fold_in(key, 2), (n,), axis_name)
      for k in keys:
        out[k] = jnp.where(flips[:, None, None, None], out[k][:, :, ::-1], out[k])
  return out


# --- Deep SVDD's normalisation: global contrast normalisation, then min-max scaling ------------

NORMALIZATIONS = ("none", "gcn_l1")


def global_contrast_normalize(x, xp=jnp):
  """Per example (over all but the first axis): ``(x - mean) / mean(|x - mean|)``, global
  contrast normalisation with the l1 scale (Deep SVDD's ``global_contrast_normalization(x,
  scale='l1')``). Invariant to ``x -> a x + b`` (a > 0), so to the value range. ``xp``: jnp on
  device, numpy on the host."""
  axes = tuple(range(1, x.ndim))
  centred = x - xp.mean(x, axis=axes, keepdims=True)
  scale = xp.mean(xp.abs(centred), axis=axes, keepdims=True)
  return centred / xp.maximum(scale, 1e-12)  # a blank image stays 0 (the reference's NaN)


def gcn_extremes(images, batch: int = 4096) -> Range:
  """The min and max over ``images`` (uint8 NHWC, on the host) after global contrast
  normalisation: the reference's per-class ``min_max`` constants, computed from the training
  classes."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  lo, hi = np.inf, -np.inf
  for i in range(0, len(images), batch):
    g = global_contrast_normalize(np.asarray(images[i:i + batch], np.float64), xp=np)
    lo, hi = min(lo, float(g.min())), max(hi, float(g.max()))
  return lo, hi


def gcn_minmax(x: jax.Array, extremes: Range, value_range: Range) -> jax.Array:
  """Global contrast normalisation, then the affine map that sends ``extremes`` (the training
  data's, :func:`gcn_extremes`) to ``value_range``: the reference's ``[0, 1]`` for the normal
  classes' training images; other images may fall outside."""
  (lo, hi), (a, b) = extremes, _check_range(value_range)
  g = global_contrast_normalize(x.astype(jnp.float32))
  return a + (b - a) * (g - lo) / (hi - lo)
