"""Dataset sources: whole splits loaded into host memory as numpy arrays.

A split is :class:`Examples`: a dict of named arrays (uint8 NHWC images, int32 labels) and the
keys that are shuffled together (``groups``). Image datasets give ``{"image", "label"}``;
image-to-image datasets give a source ``A`` and a target ``B``: aligned (paired, one group) or
two independent domains (unpaired: ``A`` with ``label_A`` and ``B`` with ``label_B``, each a
group with its own length and order).

* ``mnist`` / ``fashion_mnist`` are read straight from local IDX files when present
  (no TensorFlow needed; where genjax looks: :func:`idx_dirs`), else through TFDS.
* Other TFDS names go through TFDS (imported lazily, so ``import genjax`` stays light).
* ``image_folder``: users' own PNG/JPEG files in pix2pix's aligned or CycleGAN's unaligned
  layout (:mod:`genjax.data.folders`).
* ``edges2fashion`` (paired) and ``colored_mnist`` (unpaired, with a known true target) are
  derived offline from the local MNIST sets (:mod:`genjax.data.derived`).
* ``synthetic`` / ``synthetic_rgb`` are tiny deterministic datasets for fast tests.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import zlib
from typing import Callable

import numpy as np

from genjax import errors
from genjax import paths
from genjax.data import folders
from genjax.errors import DataError

SPLITS = ("train", "test")

# Canonical IDX file names (optionally with a ``.gz`` suffix) per split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a supported dataset.

  Attributes:
    name: Name accepted by :func:`load`.
    shape: Shape ``(H, W, C)`` of the images models generate (``image``, or ``B`` for
      image-to-image datasets; a folder's is set by its config, see :func:`image_shapes`).
    num_classes: Number of label values (1 for unlabelled datasets, whose labels are all 0).
    source: ``'idx'`` (local IDX files, TFDS fallback), ``'tfds'``, ``'folder'``, ``'derived'``
      or ``'synthetic'``.
    env_var: Environment variable naming a local IDX directory (``'idx'`` sources only).
    default_dirs: Local IDX directories searched after ``$GENJAX_DATA_DIR/<name>`` (see
      :func:`idx_dirs`).
  """
  name: str
  shape: tuple[int, int, int]
  num_classes: int
  source: str
  env_var: str | None = None
  default_dirs: tuple[str, ...] = ()
  # image keys other than the generated one (``image``, or ``B``) and their shapes
  sources: tuple[tuple[str, tuple[int, int, int]], ...] = ()
  paired: bool = True  # an image-to-image dataset whose training examples are aligned pairs

  @property
  def keys(self) -> tuple[str, ...]:
    """The keys of its examples (unpaired domains add ``label_A``/``label_B`` where labelled)."""
    return ("image", "label") if self.target == "image" else ("A", "B")

  @property
  def target(self) -> str:
    """The key of the images a model generates (and the evaluator compares with)."""
    return "B" if self.source in ("folder", "derived") else "image"


DATASETS: dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo(
            "mnist", (28, 28, 1), 10, "idx", "GENJAX_MNIST_DIR", ("~/.cache/genjax/mnist",)),
        DatasetInfo(
            "fashion_mnist", (28, 28, 1), 10, "idx", "GENJAX_FASHION_MNIST_DIR",
            ("/usr/share/datasets/fashion-mnist", "~/.cache/genjax/fashion_mnist")),
        DatasetInfo("cifar10", (32, 32, 3), 10, "tfds"),
        DatasetInfo("cifar100", (32, 32, 3), 100, "tfds"),
        DatasetInfo("svhn_cropped", (32, 32, 3), 10, "tfds"),
        DatasetInfo("celeb_a", (218, 178, 3), 1, "tfds"),
        DatasetInfo("synthetic", (28, 28, 1), 10, "synthetic"),
        DatasetInfo("synthetic_rgb", (32, 32, 3), 10, "synthetic"),
        DatasetInfo("image_folder", (256, 256, 3), 1, "folder"),
        DatasetInfo("edges2fashion", (28, 28, 1), 10, "derived",
                    sources=(("A", (28, 28, 1)),)),
        DatasetInfo("colored_mnist", (28, 28, 3), 10, "derived", sources=(("A", (28, 28, 1)),),
                    paired=False),
    )
}
LAYOUTS = ("aligned", "unaligned")  # image_folder: pix2pix's AB images, CycleGAN's trainA/trainB
# The reference's host-side resizing of image folders (the random crop and flip run on device).
PREPROCESS = folders.PREPROCESS_MODES


def paired(ds) -> bool:
  """Whether the training examples of a ``config.dataset`` section are aligned (A, B) pairs."""
  info = DATASETS[ds.name]
  return ds.layout == "aligned" if info.source == "folder" else info.paired


class Examples(dict):
  """One split: named arrays (a dict), with ``groups``, the keys shuffled together (None: all
  of them: aligned examples). Unpaired domains are one group each."""

  def __init__(self, arrays: dict[str, np.ndarray],
               groups: tuple[tuple[str, ...], ...] | None = None):
    super().__init__(arrays)
    self.groups = groups


def domain_groups(keys) -> tuple[tuple[str, ...], ...]:
  """The shuffle groups of unpaired domains: ``A`` with the keys ending in ``_A``, likewise
  ``B``."""
  return tuple((d, *sorted(k for k in keys if k.endswith(f"_{d}"))) for d in ("A", "B"))

Arrays = dict[str, np.ndarray]


def image_shapes(ds) -> dict[str, tuple[int, int, int]]:
  """The shape of each image key as models see it, for a ``config.dataset`` section: after the
  folder's crop (``crop_size`` where ``preprocess`` crops, else ``load_size``) or the
  ``image_size`` padding/resizing."""
  info = DATASETS[ds.name]
  if info.source == "folder":
    crop = "crop" in ds.preprocess
    size = ds.crop_size if crop else ds.load_size
    a, b = ds.channels
    return {"A": (size, size, a), "B": (size, size, b)}
  shapes = {**dict(info.sources), info.target: info.shape}
  s = ds.image_size
  return {k: (s, s, c) if s else (h, w, c) for k, (h, w, c) in shapes.items()}


def load_images(name: str, split: str, *, local_dir: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None, download: bool = True) -> Arrays:
  """Loads a whole split of an image dataset (``image``, ``label``) into memory: IDX files,
  TFDS or synthetic. :func:`genjax.data.load` loads every kind of dataset.

  Args:
    name: A key of :data:`DATASETS` of source idx, tfds or synthetic.
    split: ``'train'`` or ``'test'``.
    local_dir: Directory with the four IDX files (``mnist``/``fashion_mnist`` only). Overrides
      the dataset's environment variable and default directories.
    data_dir: TFDS data directory (``None``: TFDS default).
    download: Whether TFDS may download and prepare missing data.

  Returns:
    ``{"image": uint8 [N, H, W, C], "label": int32 [N]}``.

  Raises:
    DataError: Unknown name or split, corrupt files, or data that is missing and cannot be
      downloaded.
  """
  info = check_split(name, split)
  if info.source == "synthetic":
    return _synthetic(info, split)
  searched: list[pathlib.Path] = []
  if info.source == "idx":
    searched = idx_dirs(name, local_dir)
    for directory in searched:
      paths = _find_idx(directory, split)
      if paths is not None:
        return read_idx_pair(*paths)
  return _load_tfds(info, split, data_dir, download, searched)


def check_split(name: str, split: str) -> DatasetInfo:
  """The info of dataset ``name``; a DataError for an unknown name or split."""
  errors.check_choice("dataset", name, DATASETS, DataError, listing="valid names")
  info = DATASETS[name]
  splits = SPLITS + (("val",) if info.source == "folder" else ())
  if split not in splits:
    raise DataError(f"unknown split {split!r} for dataset {name!r}; valid splits: "
                    f"{', '.join(splits)}")
  return info


# ---------------------------------------------------------------------------------------------
# IDX files.


def idx_dirs(name: str, local_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
  """The directories searched for dataset ``name``'s IDX files, in order: ``local_dir``
  (``--config.dataset.local_dir``) or the dataset's own variable (``GENJAX_MNIST_DIR``) alone
  where set, else ``<data dir>/<name>`` (:func:`genjax.paths.data_dir`: ``$GENJAX_DATA_DIR``,
  default ``../shared/data`` beside a checkout) and the dataset's default directories."""
  info = DATASETS[name]
  if local_dir is not None:
    return [pathlib.Path(local_dir).expanduser()]
  env = os.environ.get(info.env_var or "")
  if env:
    return [pathlib.Path(env).expanduser()]
  root = paths.data_dir()
  return ([root / name] if root is not None else []) + [pathlib.Path(d).expanduser()
                                                          for d in info.default_dirs]


def _find_idx(directory: pathlib.Path, split: str) -> tuple[pathlib.Path, pathlib.Path] | None:
  """Returns the (images, labels) files of ``split`` in ``directory``, or None if absent."""
  found = []
  for stem in IDX_FILES[split]:
    for candidate in (directory / f"{stem}.gz", directory / stem):
      if candidate.is_file():
        found.append(candidate)
        break
    else:
      return None
  return found[0], found[1]


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
  """Reads an unsigned-byte IDX file (gzipped or not) with ``ndim`` dimensions.

  Raises:
    DataError: The file is unreadable, not IDX, or its size disagrees with its header.
  """
  path = pathlib.Path(path)
  try:
    with path.open("rb") as f:
      data = f.read()
    if data[:2] == b"\x1f\x8b":
      data = gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"cannot read IDX file {path}: {e}") from e
  header = 4 + 4 * ndim
  if len(data) < header or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
    raise DataError(f"corrupt IDX file {path}: expected magic 0x{0x800 + ndim:08x} "
                    f"(unsigned byte, {ndim}-d), got 0x{data[:4].hex() or 'empty'}")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  expected = header + int(np.prod(dims))
  if len(data) != expected:
    raise DataError(f"corrupt IDX file {path}: header says {dims} ({expected} bytes) but the "
                    f"file holds {len(data)} bytes")
  return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(images_path: str | os.PathLike, labels_path: str | os.PathLike) -> Arrays:
  """Reads matching IDX image and label files into the standard ``{image, label}`` dict."""
  images = read_idx(images_path, 3)
  labels = read_idx(labels_path, 1)
  if images.shape[0] != labels.shape[0]:
    raise DataError(f"IDX files disagree: {images_path} holds {images.shape[0]} images but "
                    f"{labels_path} holds {labels.shape[0]} labels")
  return {"image": images[..., None], "label": labels.astype(np.int32)}


# ---------------------------------------------------------------------------------------------
# TFDS.


def _load_tfds(info: DatasetInfo, split: str, data_dir, download: bool,
               searched: list[pathlib.Path]) -> Arrays:
  """Loads a split through TFDS, turning any failure into a one-line DataError."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    # batch_size=-1 is avoided on purpose: when TFDS does not know the split size (e.g. under
    # tfds.testing.mock_data) it batches by sys.maxsize and aborts the process.
    ds = tfds.load(info.name, split=split, data_dir=data_dir, download=download,
                   shuffle_files=False)
    has_label = "label" in ds.element_spec
    keys = ("image", "label") if has_label else ("image",)
    ds = ds.map(lambda ex: {k: ex[k] for k in keys}).batch(8192)
    chunks = list(tfds.as_numpy(ds))
  except Exception as e:  # pylint: disable=broad-except
    cause = (str(e).strip().splitlines() or [""])[0][:200]
    raise DataError(f"{_missing_hint(info, split, searched)} [{type(e).__name__}: {cause}]") from e
  if not chunks:
    raise DataError(f"dataset {info.name!r} split {split!r} is empty")
  images = np.concatenate([c["image"] for c in chunks]).astype(np.uint8, copy=False)
  if images.ndim == 3:
    images = images[..., None]
  if has_label:
    labels = np.concatenate([c["label"] for c in chunks]).astype(np.int32)
  else:
    labels = np.zeros(images.shape[0], np.int32)
  return {"image": images, "label": labels}


def _missing_hint(info: DatasetInfo, split: str, searched: list[pathlib.Path]) -> str:
  """One line saying that ``info`` is unavailable and how to get it."""
  if info.source == "idx":
    files = ", ".join(f"{stem}.gz" for s in SPLITS for stem in IDX_FILES[s])
    extra = " (fashion_mnist: apt-get install dataset-fashion-mnist)" if (
        info.name == "fashion_mnist") else ""
    where = ", ".join(str(d) for d in searched)
    return (f"dataset {info.name!r} split {split!r} is not available offline (no IDX files in "
            f"{where}): put the four IDX files ({files}) in a directory and set "
            f"--config.dataset.local_dir=DIR, {info.env_var}=DIR or {paths.DATA_DIR}=ROOT "
            f"(ROOT/{info.name}){extra}, or run once with network access so TFDS can download it")
  return (f"dataset {info.name!r} split {split!r} is not available: run once with network access "
          f"so TFDS can download it into --config.dataset.data_dir (default $TFDS_DATA_DIR or "
          f"~/tensorflow_datasets), or copy a prepared TFDS directory there")


# ---------------------------------------------------------------------------------------------
# Synthetic data.

_SYNTHETIC_SIZES = {"train": 512, "test": 128}
_SYNTHETIC_SEEDS = {"train": 0, "test": 1}


def _templates(size: int) -> np.ndarray:
  """Ten distinct float32 [0, 1] patterns of shape [10, size, size]."""
  i, j = np.mgrid[0:size, 0:size]
  r, c = (np.stack([i, j]) / (size - 1) * 2 - 1).astype(np.float32)  # [-1, 1] coordinates.
  rad = np.sqrt(r**2 + c**2)
  shapes: list[Callable[[], np.ndarray]] = [
      lambda: np.abs(r) < 0.2,                                   # horizontal bar
      lambda: np.abs(c) < 0.2,                                   # vertical bar
      lambda: np.abs(r - c) < 0.25,                              # diagonal
      lambda: np.abs(r + c) < 0.25,                              # anti-diagonal
      lambda: (np.abs(r) < 0.2) | (np.abs(c) < 0.2),             # plus
      lambda: np.abs(rad - 0.6) < 0.15,                          # ring
      lambda: rad < 0.45,                                        # disc
      lambda: (np.maximum(np.abs(r), np.abs(c)) < 0.7)
      & (np.maximum(np.abs(r), np.abs(c)) > 0.5),                # square outline
      lambda: np.sin(r * 3 * np.pi) > 0.3,                       # horizontal stripes
      lambda: (i * 4 // size + j * 4 // size) % 2 == 1,           # checkerboard
  ]
  return np.stack([s() for s in shapes]).astype(np.float32)


def _synthetic(info: DatasetInfo, split: str) -> Arrays:
  """Class-dependent shapes with random shifts, contrast, colour and noise; fixed seed."""
  h, w, channels = info.shape
  n = _SYNTHETIC_SIZES[split]
  rng = np.random.default_rng([_SYNTHETIC_SEEDS[split], h, channels])
  labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
  base = _templates(h)[labels]  # [n, h, w]
  shifts = rng.integers(-2, 3, size=(n, 2))
  rows = (np.arange(h)[None, :] - shifts[:, :1]) % h  # [n, h]
  cols = (np.arange(w)[None, :] - shifts[:, 1:]) % w  # [n, w]
  base = base[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  contrast = rng.uniform(0.6, 1.0, size=(n, 1, 1, 1))
  if channels == 1:
    colour = np.ones((n, 1, 1, 1))
  else:
    colour = rng.uniform(0.3, 1.0, size=(n, 1, 1, channels))
  images = base[..., None] * contrast * colour + rng.normal(0, 0.08, size=(n, h, w, channels))
  images = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
  return {"image": images, "label": labels}


def labelled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of ``per_class`` examples of every class in ``labels``, chosen by ``seed``.

  The semi-supervised setting of Salimans et al. (2016): e.g. 10 labelled MNIST digits per class.
  The choice depends only on ``(labels, per_class, seed)``.

  Raises:
    DataError: ``per_class < 1``, or a class has fewer than ``per_class`` examples.
  """
  labels = np.asarray(labels)
  if per_class < 1:
    raise DataError(f"per_class must be >= 1, got {per_class}")
  rng = np.random.default_rng([seed, 0x5E31])
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise DataError(f"class {c} has only {len(members)} examples; cannot take {per_class}")
    chosen.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(chosen))
