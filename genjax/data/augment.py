"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to the discriminator's
real and generated inputs alike, so the generator is trained through them.

``diff_augment(x, policy, key)`` applies the named transforms in order, each with independent
per-example draws: ``color`` (brightness +U(-0.5, 0.5), saturation x U(0, 2) around the channel
mean, contrast x U(0.5, 1.5) around the image mean), ``translation`` (integer shifts of up to 1/8
of the size per axis, zero fill) and ``cutout`` (a zeroed square of half the size at a random
centre). Draws are made for the global batch (``parallel.batch_random``), so the result does not
depend on how the batch is split over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genjax import errors
from genjax import parallel

Array = jax.Array


def _uniform(key, shape, axis_name, low=0.0, high=1.0):
  return parallel.batch_random(jax.random.uniform, key, shape, axis_name, minval=low,
                               maxval=high)


def _randint(key, shape, axis_name, low, high):
  return parallel.batch_random(jax.random.randint, key, shape, axis_name, minval=low,
                               maxval=high)


def color(x: Array, key: Array, axis_name: str | None = None) -> Array:
  b = x.shape[0]
  k1, k2, k3 = jax.random.split(key, 3)
  x = x + _uniform(k1, (b, 1, 1, 1), axis_name, -0.5, 0.5).astype(x.dtype)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - mean) * _uniform(k2, (b, 1, 1, 1), axis_name, 0.0, 2.0).astype(x.dtype) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * _uniform(k3, (b, 1, 1, 1), axis_name, 0.5, 1.5).astype(x.dtype) + mean


def translate(x: Array, shifts: Array) -> Array:
  """Each image moved by its integer ``shifts`` (B, 2) = (dy, dx), filling with zeros."""
  b, h, w, _ = x.shape
  sy, sx = h, w  # pad by the full size: any |shift| <= size is representable
  padded = jnp.pad(x, ((0, 0), (sy, sy), (sx, sx), (0, 0)))

  def crop(image, shift):
    return jax.lax.dynamic_slice(image, (sy - shift[0], sx - shift[1], 0), (h, w, x.shape[-1]))
  return jax.vmap(crop)(padded, shifts)


def translation(x: Array, key: Array, axis_name: str | None = None, ratio: float = 0.125
                ) -> Array:
  b, h, w, _ = x.shape
  s = jnp.array([int(h * ratio + 0.5), int(w * ratio + 0.5)])
  shifts = _randint(key, (b, 2), axis_name, -s, s + 1)
  return translate(x, shifts)


def cutout_mask(shape: tuple[int, ...], centres: Array, size: tuple[int, int]) -> Array:
  """1 outside, 0 inside a ``size`` square whose top-left corner is ``centre - size // 2``."""
  _, h, w, _ = shape
  rows = jnp.arange(h)[None, :] - (centres[:, :1] - size[0] // 2)
  cols = jnp.arange(w)[None, :] - (centres[:, 1:] - size[1] // 2)
  inside = ((rows >= 0) & (rows < size[0]))[:, :, None] & ((cols >= 0) & (cols < size[1]))[
      :, None, :]
  return (~inside).astype(jnp.float32)[..., None]


def cutout(x: Array, key: Array, axis_name: str | None = None, ratio: float = 0.5) -> Array:
  b, h, w, _ = x.shape
  size = (int(h * ratio + 0.5), int(w * ratio + 0.5))
  centres = _randint(key, (b, 2), axis_name, 0, jnp.array([h, w]))
  return x * cutout_mask(x.shape, centres, size).astype(x.dtype)


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(spec: str) -> tuple[str, ...]:
  """``"color,translation"`` -> ("color", "translation"); raises ValueError for unknown names."""
  names = tuple(n.strip() for n in spec.split(",") if n.strip())
  for n in names:
    errors.check_choice("DiffAugment transform", n, AUGMENTATIONS)
  return names


def diff_augment(x: Array, policy: tuple[str, ...], key: Array,
                 axis_name: str | None = None) -> Array:
  for i, name in enumerate(policy):
    x = AUGMENTATIONS[name](x, jax.random.fold_in(key, i), axis_name)
  return x
