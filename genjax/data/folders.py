"""Users' own image folders in pix2pix / CycleGAN layouts, loaded into host memory.

Two layouts, named as in pytorch-CycleGAN-and-pix2pix's ``--dataset_mode``:

* **aligned** (pix2pix): ``root/<split>/`` holds images that each show A (left half) and B (right
  half) side by side, so every image is twice as wide as it is high. :func:`load_aligned`.
* **unaligned** (CycleGAN): ``root/<split>A/`` and ``root/<split>B/`` (``trainA``, ``trainB``,
  ``testA``, ``testB``) hold the two domains, with any number of images each.
  :func:`load_unaligned`.

A folder's images are found as the reference's ``make_dataset`` finds them: the folder and all its
subfolders are searched for files with an image extension (:data:`IMG_EXTENSIONS`, here in any
letter case), and the list is sorted by path relative to the folder, so the order is the same on
every machine.

Preprocessing (:data:`PREPROCESS_MODES`, the reference's ``--preprocess`` names). Only the
deterministic, host-side part runs here, once, at load time:

* ``resize_and_crop``: every image is resized to ``load_size`` x ``load_size`` (bicubic, as the
  reference's ``transforms.Resize(..., BICUBIC)`` on a PIL image);
* ``scale_width`` and ``scale_width_and_crop``: resized to width ``load_size`` and height
  ``load_size * h // w`` (bicubic), at least ``crop_size`` high when ``crop_size`` is given, as the
  reference's ``__scale_width``; an image already ``load_size`` wide (and high enough) is kept;
* ``crop``: native size;
* ``none``: native size rounded to a multiple of 4 with Python's ``round(x / 4) * 4`` (ties to
  even) and resized (bicubic) if that changes it, as the reference's ``__make_power_2(base=4)``.

The random parts (the crop to ``crop_size`` and the horizontal flip) are left to the seeded,
on-device pipeline. All images of one domain must have one size after this step.

Channels (the reference's ``input_nc`` / ``output_nc``): ``channels_a`` / ``channels_b`` are

* ``3`` (the default, as the reference's ``input_nc``/``output_nc``): every image is converted to
  RGB (PIL's ``convert('RGB')``: grayscale is replicated, alpha is dropped, a palette is
  expanded), as the reference always does;
* ``1``: every image is converted to RGB and then to grayscale with PIL's ITU-R 601-2 luma
  (``L = R * 299/1000 + G * 587/1000 + B * 114/1000``), the reference's ``transforms.Grayscale(1)``,
  before resizing;
* ``None`` ("auto", strict): the channel count is taken from the files themselves. Grayscale files
  (modes ``1``, ``L``, ``LA``, or a palette whose colours are all gray) give 1 channel, colour files
  (``RGB``, ``RGBA``, ``CMYK``, ``YCbCr``, a colour palette, ...) give 3; a folder that mixes the
  two is a :class:`~genjax.errors.DataError` that names one file of each kind and says to pass
  ``channels_a`` / ``channels_b`` = 1 or 3 explicitly.

So a folder that mixes grayscale and colour files is an error exactly when no conversion was asked
for; an explicit 1 or 3 is a consistent conversion and accepts both (real photo datasets often
hold a few grayscale pictures among colour ones, which the reference also converts silently).

In every case a file must hold 8-bit samples: 16-bit and float images (modes ``I``, ``I;16``,
``F``, ...) are refused, since PIL's conversion to 8 bits clips them to white instead of scaling.

Every user-caused problem is a :class:`~genjax.errors.DataError` with a one-line message, found
before any pixel is decoded where possible (missing folders, no images, unreadable headers, an
aligned image that is not twice as wide as it is high, unsupported or mixed modes, sizes that
disagree); a file whose pixel data is corrupt is named when it is decoded. Nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
from PIL import Image

from genjax.errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
CHANNELS = (1, 3, None)

# Modes whose samples are 8-bit, by what they hold. Palette modes are classified by their palette.
GRAY_MODES = frozenset({"1", "L", "LA", "La"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
PALETTE_MODES = frozenset({"P", "PA"})

Arrays = dict[str, np.ndarray]
PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class _Header:
  """What an image's header says: enough to plan its decoding without reading its pixels."""
  path: pathlib.Path
  size: tuple[int, int]  # (width, height), PIL's order.
  gray: bool


# ---------------------------------------------------------------------------------------------
# Public API.


def load_aligned(root: PathLike, split: str, *, load_size: int = 286,
                 preprocess: str = "resize_and_crop", channels_a: int | None = 3,
                 channels_b: int | None = 3, crop_size: int | None = None) -> Arrays:
  """Loads pix2pix's aligned layout: ``root/<split>/`` images with A and B side by side.

  Args:
    root: The dataset folder (the reference's ``--dataroot``).
    split: The subfolder to read (the reference's ``--phase``): ``'train'``, ``'test'``, ``'val'``.
    load_size: Target size of the resizing preprocess modes (the reference's ``--load_size``).
    preprocess: One of :data:`PREPROCESS_MODES` (the reference's ``--preprocess``).
    channels_a: 3 (RGB), 1 (grayscale) or None (from the files; see the module docstring).
    channels_b: The same for B.
    crop_size: Optional: the size the device pipeline will crop to. ``scale_width*`` then keeps
      the height at least ``crop_size`` (as the reference does), and the ``*crop`` modes check
      that every image is at least that large.

  Returns:
    ``{"A": uint8 [N, h, w, ca], "B": uint8 [N, h, w, cb]}``, row ``i`` of both from the
    ``i``-th image in sorted order.

  Raises:
    DataError: Bad arguments, a missing root or split folder, no images, an unreadable or
      corrupt image, an image whose width is not twice its height, an unsupported or (with
      ``None`` channels) mixed mode, or images whose sizes differ after preprocessing.
  """
  _check_args(load_size, preprocess, crop_size, channels_a=channels_a, channels_b=channels_b)
  root = _check_root(root, f"{_check_split(split)}/ (pix2pix's aligned layout: each image holds "
                     f"A and B side by side)")
  folder = root / split
  paths = _folder_images(folder, f"the {split} images (A and B side by side, width = 2 x height)")
  headers = [_read_header(p) for p in paths]
  for h in headers:
    w, ht = h.size
    if w != 2 * ht:
      raise DataError(
          f"aligned image {h.path} is {w}x{ht} (width x height) but must be twice as wide as "
          f"high (A on the left, B on the right, each square): fix or remove it, or use the "
          f"unaligned layout ({split}A/, {split}B/)")
  halves = [dataclasses.replace(h, size=(h.size[1], h.size[1])) for h in headers]
  size = _common_size(folder, halves, load_size, preprocess, crop_size)
  ca = _resolve_channels(folder, headers, channels_a, "channels_a")
  cb = _resolve_channels(folder, headers, channels_b, "channels_b")
  a = np.empty((len(paths), size[1], size[0], ca), np.uint8)
  b = np.empty((len(paths), size[1], size[0], cb), np.uint8)
  for i, h in enumerate(headers):
    side = h.size[1]
    rgb = _decode(h.path)
    a[i] = _finish(rgb.crop((0, 0, side, side)), ca, size)
    b[i] = _finish(rgb.crop((side, 0, 2 * side, side)), cb, size)
  return {"A": a, "B": b}


def load_unaligned(root: PathLike, split: str, *, load_size: int = 286,
                   preprocess: str = "resize_and_crop", channels_a: int | None = 3,
                   channels_b: int | None = 3, crop_size: int | None = None) -> Arrays:
  """Loads CycleGAN's unaligned layout: ``root/<split>A/`` and ``root/<split>B/``.

  The arguments are those of :func:`load_aligned`; the two domains are read independently, so
  they may differ in number of images, native size and (with ``None`` channels) channel count.

  Returns:
    ``{"A": uint8 [NA, h, w, ca], "B": uint8 [NB, h', w', cb]}`` in sorted file order.

  Raises:
    DataError: As :func:`load_aligned`, for either domain folder (except the aspect-ratio rule).
  """
  _check_args(load_size, preprocess, crop_size, channels_a=channels_a, channels_b=channels_b)
  root = _check_root(root, f"{_check_split(split)}A/ and {split}B/ (CycleGAN's unaligned layout)")
  plans = {}
  for domain, channels in (("A", channels_a), ("B", channels_b)):
    folder = root / f"{split}{domain}"
    paths = _folder_images(folder, f"the {split} images of domain {domain}")
    headers = [_read_header(p) for p in paths]
    size = _common_size(folder, headers, load_size, preprocess, crop_size)
    plans[domain] = (headers, size,
                     _resolve_channels(folder, headers, channels, f"channels_{domain.lower()}"))
  out = {}
  for domain, (headers, size, c) in plans.items():
    images = np.empty((len(headers), size[1], size[0], c), np.uint8)
    for i, h in enumerate(headers):
      images[i] = _finish(_decode(h.path), c, size)
    out[domain] = images
  return out


def image_paths(folder: PathLike) -> list[pathlib.Path]:
  """The image files under ``folder`` and its subfolders, sorted by relative path (``/``-joined).

  Symbolic links to folders are not followed (as ``os.walk`` and the reference); an absent
  folder gives an empty list.
  """
  folder = pathlib.Path(folder)
  found = []
  for dirpath, _, names in os.walk(folder):
    for name in names:
      if name.lower().endswith(IMG_EXTENSIONS):
        path = pathlib.Path(dirpath) / name
        found.append((path.relative_to(folder).as_posix(), path))
  return [path for _, path in sorted(found)]


def preprocessed_size(width: int, height: int, *, load_size: int = 286,
                      preprocess: str = "resize_and_crop",
                      crop_size: int | None = None) -> tuple[int, int]:
  """``(width, height)`` of an image of native size ``width`` x ``height`` after the host part
  of ``preprocess`` (see the module docstring). Both may be 0 for degenerate inputs."""
  if preprocess == "resize_and_crop":
    return load_size, load_size
  if preprocess in ("scale_width", "scale_width_and_crop"):
    floor = crop_size or 0
    if width == load_size and height >= floor:
      return width, height
    return load_size, max(load_size * height // width, floor)
  if preprocess == "none":
    return round(width / 4) * 4, round(height / 4) * 4  # Banker's rounding, as the reference.
  return width, height  # 'crop'


# ---------------------------------------------------------------------------------------------
# Checks.


def _check_args(load_size, preprocess, crop_size, **channels) -> None:
  if preprocess not in PREPROCESS_MODES:
    raise DataError(f"unknown preprocess {preprocess!r}; valid names: "
                    f"{', '.join(PREPROCESS_MODES)}")
  if isinstance(load_size, bool) or not isinstance(load_size, int) or load_size < 1:
    raise DataError(f"load_size must be a positive int, got {load_size!r}")
  if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, int)
                                or crop_size < 1):
    raise DataError(f"crop_size must be a positive int or None, got {crop_size!r}")
  for name, value in channels.items():
    if isinstance(value, bool) or value not in CHANNELS:
      raise DataError(f"{name} must be 1 (grayscale), 3 (RGB) or None (from the files), got "
                      f"{value!r}")


def _check_split(split) -> str:
  if not isinstance(split, str) or not split or split in (".", "..") or any(
      s in split for s in ("/", "\\", os.sep)):
    raise DataError(f"split must be a folder name such as 'train' or 'test', got {split!r}")
  return split


def _check_root(root: PathLike, holds: str) -> pathlib.Path:
  path = pathlib.Path(root).expanduser()
  if not path.exists():
    raise DataError(f"dataset root {path} does not exist: set it to the folder that holds {holds}")
  if not path.is_dir():
    raise DataError(f"dataset root {path} is not a folder: set it to the folder that holds {holds}")
  return path


def _folder_images(folder: pathlib.Path, what: str) -> list[pathlib.Path]:
  if not folder.is_dir():
    raise DataError(f"image folder {folder} does not exist: create it and put {what} there")
  paths = image_paths(folder)
  if not paths:
    raise DataError(f"image folder {folder} holds no images ({', '.join(IMG_EXTENSIONS)}, any "
                    f"case, subfolders included): put {what} there")
  return paths


def _unreadable(path: pathlib.Path, e: BaseException) -> DataError:
  cause = (str(e).strip().splitlines() or [""])[0][:160]
  detail = f"{type(e).__name__}: {cause}" if cause else type(e).__name__
  return DataError(f"cannot read image {path} ({detail}): replace or remove the file")


def _read_header(path: pathlib.Path) -> _Header:
  """Opens ``path`` lazily (header only) and classifies its mode."""
  try:
    with Image.open(path) as im:
      mode, size = im.mode, im.size
      palette = im.palette if mode in PALETTE_MODES else None
      if palette is not None:
        stride, raw = len(palette.mode), palette.palette
        colours = np.frombuffer(raw, np.uint8)[:len(raw) // stride * stride].reshape(-1, stride)
  except Exception as e:  # pylint: disable=broad-except  # Any failure on a user's file.
    raise _unreadable(path, e) from e
  if mode in GRAY_MODES:
    gray = True
  elif mode in COLOUR_MODES:
    gray = False
  elif mode in PALETTE_MODES:
    gray = palette is not None and bool(
        np.all(colours[:, 0] == colours[:, 1]) and np.all(colours[:, 1] == colours[:, 2]))
  else:
    raise DataError(f"image {path} has mode {mode!r} (16-bit or float samples), which would be "
                    f"clipped to 8 bits: save it as 8-bit grayscale or RGB")
  if size[0] < 1 or size[1] < 1:
    raise _unreadable(path, ValueError(f"empty image {size[0]}x{size[1]}"))
  return _Header(path, size, gray)


def _common_size(folder, headers, load_size, preprocess, crop_size) -> tuple[int, int]:
  """The one ``(width, height)`` all ``headers`` have after preprocessing, or a DataError."""
  first = None
  for h in headers:
    size = preprocessed_size(*h.size, load_size=load_size, preprocess=preprocess,
                             crop_size=crop_size)
    if min(size) < 1:
      raise DataError(
          f"image {h.path} ({h.size[0]}x{h.size[1]}) becomes {size[0]}x{size[1]} with preprocess "
          f"{preprocess!r}: use a larger image or preprocess='resize_and_crop'")
    if first is None:
      first = (h, size)
    elif size != first[1]:
      f, fsize = first
      raise DataError(
          f"images in {folder} have different sizes after preprocess {preprocess!r}: {f.path.name} "
          f"is {fsize[0]}x{fsize[1]} but {h.path.relative_to(folder)} is {size[0]}x{size[1]} "
          f"(width x height): use preprocess='resize_and_crop' (or 'scale_width' for one aspect "
          f"ratio) so that every image of a domain has one size")
    if crop_size is not None and "crop" in preprocess and min(size) < crop_size:
      raise DataError(
          f"image {h.path} is {size[0]}x{size[1]} after preprocess {preprocess!r}, smaller than "
          f"crop_size {crop_size}: lower crop_size or raise load_size")
  return first[1]


def _resolve_channels(folder, headers, channels, name) -> int:
  """Applies the channel rule of the module docstring."""
  if channels is not None:
    return channels
  gray = [h for h in headers if h.gray]
  colour = [h for h in headers if not h.gray]
  if gray and colour:
    raise DataError(
        f"images in {folder} mix grayscale ({len(gray)}, e.g. {gray[0].path.relative_to(folder)}) "
        f"and colour ({len(colour)}, e.g. {colour[0].path.relative_to(folder)}): pass {name}=3 to "
        f"convert all to RGB or {name}=1 to convert all to grayscale")
  return 1 if gray else 3


# ---------------------------------------------------------------------------------------------
# Decoding.


def _decode(path: pathlib.Path) -> Image.Image:
  """The image at ``path`` decoded and converted to RGB, as the reference's
  ``Image.open(path).convert('RGB')``; a decoding failure is a one-line DataError."""
  try:
    with Image.open(path) as im:
      return im.convert("RGB")
  except Exception as e:  # pylint: disable=broad-except  # Any failure on a user's file.
    raise _unreadable(path, e) from e


def _finish(rgb: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
  """Grayscale conversion (if asked), then the bicubic resize; returns uint8 [h, w, c]."""
  im = rgb.convert("L") if channels == 1 else rgb
  if im.size != size:
    im = im.resize(size, Image.Resampling.BICUBIC)
  arr = np.asarray(im, np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr
