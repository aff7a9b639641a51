"""Image-to-image datasets derived offline and deterministically from MNIST and Fashion-MNIST.

Both are computed from the local IDX files (through :func:`genjax.data.sources.load_images`) with integer
arithmetic only, so every call on every machine gives the same bytes; nothing is random.

``edges2fashion`` (paired, for pix2pix; the small sibling of edges2shoes)
  ``A`` is an edge map of each Fashion-MNIST garment drawn black (0) on white (255), like the HED
  edges of edges2shoes, and ``B`` the garment itself. The detector (:func:`edge_map`) marks the
  union of

  * the **outline**: the inner border of the silhouette ``S = g > SILHOUETTE_LEVEL`` (pixels of
    ``S`` with a 4-neighbour outside ``S``, the image frame counting as outside), a closed,
    8-connected line one pixel wide, holes included;
  * **interior seams**: pixels inside ``S`` (not on its border) where the 3x3 Sobel gradient
    ``(gx, gy)`` of the gray levels (edge-replicated at the frame) has magnitude
    ``sqrt(gx^2 + gy^2) >= 4 * EDGE_LEVEL`` (a step of ``EDGE_LEVEL`` gray levels) and is a local
    maximum across the edge (non-maximum suppression: the gradient direction is quantised to
    horizontal, vertical or one of the two diagonals, and the magnitude must be ``>=`` the
    neighbour behind and ``>`` the neighbour ahead), so that seams are thin lines too.

``colored_mnist`` (unpaired for training, paired for testing; a known ground truth)
  Domain ``B`` is a fixed per-pixel colourisation of MNIST digits. A gray level ``g`` in
  ``[0, 255]`` maps to the colour on the straight RGB segment from ``C0 = COLOR_BACKGROUND =
  (0, 32, 96)`` (navy, ``g = 0``) to ``C1 = COLOR_STROKE = (255, 224, 64)`` (amber, ``g = 255``)::

      to_b(g)[k] = floor(C0[k] + (C1[k] - C0[k]) * g / 255 + 1/2)           k in {R, G, B}

  and back by orthogonal projection onto the segment, ``D = C1 - C0``::

      to_a(b) = clip(floor(255 * <b - C0, D> / <D, D> + 1/2), 0, 255)

  ``to_b`` is injective on the 256 gray levels (its red channel is ``g`` itself) and
  ``to_a(to_b(g)) == g`` exactly for every ``g`` (tested exhaustively); ``to_a`` also maps any
  other colour, e.g. a generator's output, to the gray level of the nearest point of the segment.

  * ``split='train'``: ``A`` are the MNIST training digits at even indices (0, 2, ...) and ``B``
    the colourised digits at odd indices (1, 3, ...): two disjoint halves, so no ``B`` image is
    the translation of an ``A`` image. Keys ``A``, ``label_A``, ``B``, ``label_B``.
  * ``split='test'``: paired for evaluation: ``A`` the MNIST test digits, ``B = to_b(A)``, and
    ``label``; a translation ``A -> B`` can be scored against the true target.
"""

from __future__ import annotations

import os

import numpy as np

from genjax.data import sources
from genjax.errors import DataError

Arrays = dict[str, np.ndarray]

SILHOUETTE_LEVEL = 8   # Gray levels above this belong to the garment.
EDGE_LEVEL = 40        # Interior edges: Sobel magnitude >= 4 * EDGE_LEVEL (a step of 40 levels).
COLOR_BACKGROUND = (0, 32, 96)   # to_b(0)
COLOR_STROKE = (255, 224, 64)    # to_b(255)

_CHUNK = 256  # Images per vectorised chunk: temporaries stay in cache (about 2x faster than 8192).


# ---------------------------------------------------------------------------------------------
# edges2fashion.


def edge_map(images: np.ndarray) -> np.ndarray:
  """Edges of grayscale images (see the module docstring), black (0) on white (255).

  Args:
    images: uint8 ``[N, H, W, 1]``.

  Returns:
    uint8 ``[N, H, W, 1]``: 0 on edge pixels, 255 elsewhere.
  """
  images = _check_uint8(images, 1, "edge_map")
  out = np.empty_like(images)
  for start in range(0, images.shape[0], _CHUNK):
    chunk = images[start:start + _CHUNK, :, :, 0]
    out[start:start + _CHUNK, :, :, 0] = np.where(_edges(chunk), 0, 255).astype(np.uint8)
  return out


def _edges(gray: np.ndarray) -> np.ndarray:
  """bool [n, h, w] edge mask of uint8 [n, h, w] images."""
  silhouette = gray > SILHOUETTE_LEVEL
  s = np.pad(silhouette, ((0, 0), (1, 1), (1, 1)), constant_values=False)
  interior = silhouette & s[:, :-2, 1:-1] & s[:, 2:, 1:-1] & s[:, 1:-1, :-2] & s[:, 1:-1, 2:]
  outline = silhouette & ~interior

  g = np.pad(gray.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
  h, w = gray.shape[1:]
  at = lambda dy, dx: g[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]  # noqa: E731
  gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
  gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
  mag2 = gx * gx + gy * gy  # <= 2 * 1020^2: fits int32.
  strong = interior & (mag2 >= (4 * EDGE_LEVEL) ** 2)

  # Non-maximum suppression across the edge; tan(22.5 deg) ~ 29/70, in integers.
  ax, ay = np.abs(gx), np.abs(gy)
  horizontal = 70 * ay <= 29 * ax        # Gradient along x: compare left and right.
  vertical = 70 * ax <= 29 * ay          # Gradient along y: compare up and down.
  diagonal = ~horizontal & ~vertical & ((gx > 0) == (gy > 0))  # Down-right.
  anti = ~horizontal & ~vertical & ~diagonal                   # Down-left.
  m = np.pad(mag2, ((0, 0), (1, 1), (1, 1)))
  nb = lambda dy, dx: m[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]  # noqa: E731
  peak = ((horizontal & (mag2 >= nb(0, -1)) & (mag2 > nb(0, 1)))
          | (vertical & (mag2 >= nb(-1, 0)) & (mag2 > nb(1, 0)))
          | (diagonal & (mag2 >= nb(-1, -1)) & (mag2 > nb(1, 1)))
          | (anti & (mag2 >= nb(-1, 1)) & (mag2 > nb(1, -1))))
  return outline | (strong & peak)


def edges2fashion(split: str, *, local_dir: str | os.PathLike | None = None,
                  data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
  """Paired edges -> garments from Fashion-MNIST ``split`` (``'train'`` 60000, ``'test'`` 10000).

  The keyword arguments go to :func:`genjax.data.sources.load_images`.

  Returns:
    ``{"A": edges uint8 [N, 28, 28, 1], "B": garments uint8 [N, 28, 28, 1], "label": int32 [N]}``.

  Raises:
    DataError: Unknown split, or Fashion-MNIST unavailable.
  """
  src = sources.load_images("fashion_mnist", split, local_dir=local_dir, data_dir=data_dir,
                     download=download)
  return {"A": edge_map(src["image"]), "B": src["image"], "label": src["label"]}


# ---------------------------------------------------------------------------------------------
# colored_mnist.


def _palette() -> np.ndarray:
  """uint8 [256, 3]: ``to_b`` of every gray level, by exact integer rounding."""
  g = np.arange(256, dtype=np.int64)[:, None]
  c0 = np.asarray(COLOR_BACKGROUND, np.int64)
  d = np.asarray(COLOR_STROKE, np.int64) - c0
  # floor(c0 + d * g / 255 + 1/2) == floor((2 * (255 * c0 + d * g) + 255) / 510).
  return ((2 * (255 * c0 + d * g) + 255) // 510).astype(np.uint8)


PALETTE = _palette()
PALETTE.flags.writeable = False


def to_b(a: np.ndarray) -> np.ndarray:
  """Colourises gray images: uint8 ``[..., 1]`` -> uint8 ``[..., 3]`` (module docstring)."""
  a = _check_uint8(a, 1, "to_b")
  return PALETTE[a[..., 0]]


def to_a(b: np.ndarray) -> np.ndarray:
  """Inverse of :func:`to_b` by projection onto the colour segment: uint8 ``[..., 3]`` -> uint8
  ``[..., 1]``; exact on ``to_b``'s outputs."""
  b = _check_uint8(b, 3, "to_a")
  # 255 * <b - C0, D> as a sum of one table look-up per channel (|each term| < 2^24: int32).
  num = _PROJECT[0][b[..., 0]] + _PROJECT[1][b[..., 1]] + _PROJECT[2][b[..., 2]]
  # floor(num / dd + 1/2) == floor((2 * num + dd) / (2 * dd)).
  g = (2 * num + _DD) // (2 * _DD)
  return np.clip(g, 0, 255).astype(np.uint8)[..., None]


def _projection_tables() -> tuple[np.ndarray, int]:
  c0 = np.asarray(COLOR_BACKGROUND, np.int64)
  d = np.asarray(COLOR_STROKE, np.int64) - c0
  v = np.arange(256, dtype=np.int64)
  tables = np.stack([255 * (v - c0[k]) * d[k] for k in range(3)]).astype(np.int32)
  return tables, int(d @ d)


_PROJECT, _DD = _projection_tables()


def colored_mnist(split: str, *, local_dir: str | os.PathLike | None = None,
                  data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
  """Gray MNIST digits (A) and colourised digits (B), see the module docstring.

  The keyword arguments go to :func:`genjax.data.sources.load_images`.

  Returns:
    ``'train'``: ``{"A": uint8 [30000, 28, 28, 1], "label_A": int32 [30000], "B": uint8
    [30000, 28, 28, 3], "label_B": int32 [30000]}`` from disjoint halves (even / odd indices).
    ``'test'``: ``{"A": uint8 [10000, 28, 28, 1], "B": to_b(A), "label": int32 [10000]}``.

  Raises:
    DataError: Unknown split, or MNIST unavailable.
  """
  src = sources.load_images("mnist", split, local_dir=local_dir, data_dir=data_dir, download=download)
  images, labels = src["image"], src["label"]
  if split == "train":
    return {"A": images[0::2].copy(), "label_A": labels[0::2].copy(),
            "B": to_b(images[1::2]), "label_B": labels[1::2].copy()}
  return {"A": images, "B": to_b(images), "label": labels}


def _check_uint8(x, channels: int, fn: str) -> np.ndarray:
  x = np.asarray(x)
  if x.dtype != np.uint8 or x.ndim < 1 or x.shape[-1] != channels:
    raise DataError(f"{fn} takes uint8 images [..., {channels}], got {x.dtype} "
                    f"{list(x.shape)}: add a trailing channel axis of size {channels}")
  return x
