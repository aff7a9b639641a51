"""Every dataset by name: image datasets (:mod:`genjax.data.sources`), users' image folders
(:mod:`genjax.data.folders`) and the derived image-to-image sets (:mod:`genjax.data.derived`),
loaded as :class:`~genjax.data.sources.Examples`."""

from __future__ import annotations

import os

import numpy as np

from genjax import errors
from genjax.data import derived
from genjax.data import folders
from genjax.data.sources import Arrays
from genjax.data.sources import check_split
from genjax.data.sources import DatasetInfo
from genjax.data.sources import domain_groups
from genjax.data.sources import Examples
from genjax.data.sources import labelled_subset
from genjax.data.sources import LAYOUTS
from genjax.data.sources import load_images
from genjax.errors import DataError


def load(name: str, split: str, *, local_dir: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None, download: bool = True, path: str = "",
         layout: str = "aligned", direction: str = "AtoB", preprocess: str = "resize_and_crop",
         load_size: int = 286, channels: tuple[int, int] = (3, 3)) -> Examples:
  """Loads a whole dataset split into memory.

  Args:
    name: A key of :data:`~genjax.data.sources.DATASETS`.
    split: ``'train'`` or ``'test'``.
    local_dir: Directory with the four IDX files (``mnist``/``fashion_mnist`` only). Overrides
      the dataset's environment variable and default directories.
    data_dir: TFDS data directory (``None``: TFDS default).
    download: Whether TFDS may download and prepare missing data.
    path, layout, preprocess, load_size, channels: ``image_folder`` only: the root folder, its
      layout (:data:`LAYOUTS`), the host-side resizing (the reference's ``preprocess`` names)
      and the channels of the model's input and output (the reference's input_nc, output_nc).
    direction: ``'AtoB'``, or ``'BtoA'`` to swap the source and target of an image-to-image
      dataset.

  Returns:
    ``{"image": uint8 [N, H, W, C], "label": int32 [N]}``, or an image-to-image dataset's
    ``A``/``B`` (see :mod:`genjax.data.sources`).

  Raises:
    DataError: Unknown name or split, corrupt files, or data that is missing and cannot be
      downloaded.
  """
  info = check_split(name, split)
  if direction not in ("AtoB", "BtoA"):
    raise DataError(f"unknown direction {direction!r}; valid: AtoB, BtoA")
  if info.source in ("folder", "derived"):
    file_channels = tuple(channels) if direction == "AtoB" else tuple(channels)[::-1]
    arrays = _load_translation(info, split, local_dir=local_dir, data_dir=data_dir,
                               download=download, path=path, layout=layout,
                               preprocess=preprocess, load_size=load_size,
                               channels=file_channels)
    if direction == "BtoA":
      swap = {"A": "B", "B": "A", "label_A": "label_B", "label_B": "label_A"}
      arrays = {swap.get(k, k): v for k, v in arrays.items()}
    unpaired = len(arrays["A"]) != len(arrays["B"]) or "label_A" in arrays or (
        info.source == "folder" and layout == "unaligned")
    return Examples(arrays, domain_groups(arrays) if unpaired else None)
  return Examples(load_images(name, split, local_dir=local_dir, data_dir=data_dir,
                              download=download))


def load_config(ds, split: str | None = None) -> Examples:
  """:func:`load` with the options of a ``config.dataset`` section.

  Without ``split`` this is the training data: the section's own split, of the classes
  ``ds.classes`` only where it names some (one-class training: the normal classes), and only
  ``ds.per_class`` examples of each class where that is set (few-label training, chosen by
  ``ds.subset_seed``). A split named explicitly is loaded whole, every class (evaluation: the
  normal classes against the others).
  """
  examples = load(ds.name, split or ds.split, local_dir=ds.local_dir or None,
                  data_dir=ds.data_dir or None, download=ds.download, path=ds.path,
                  layout=ds.layout, direction=ds.direction, preprocess=ds.preprocess,
                  load_size=ds.load_size, channels=tuple(ds.channels))
  if split is None and ds.classes:
    examples = select_classes(examples, ds.classes)
  if split is None and ds.per_class:
    keep = labelled_subset(examples["label"], ds.per_class, ds.subset_seed)
    examples = Examples({k: v[keep] for k, v in examples.items()}, examples.groups)
  return examples


def select_classes(examples: Examples, classes) -> Examples:
  """The examples whose ``label`` is one of ``classes``, in their order.

  Raises:
    DataError: Examples without labels, or none of those classes.
  """
  if "label" not in examples:
    raise DataError(f"cannot select classes {list(classes)}: the examples have no labels "
                    f"(keys {', '.join(examples)})")
  keep = np.isin(examples["label"], np.asarray(classes))
  if not keep.any():
    raise DataError(f"no examples of classes {list(classes)} (labels present: "
                    f"{np.unique(examples['label']).tolist()})")
  return Examples({k: v[keep] for k, v in examples.items()}, examples.groups)


def _load_translation(info: DatasetInfo, split: str, *, path: str, layout: str, preprocess: str,
                      load_size: int, channels, **idx_options) -> Arrays:
  if info.source == "derived":
    return getattr(derived, info.name)(split, **idx_options)
  if not path:
    raise DataError("dataset 'image_folder' needs its root folder: set "
                    "--config.dataset.path=/path/to/dataset")
  errors.check_choice("image_folder layout", layout, LAYOUTS, DataError)
  loader = folders.load_aligned if layout == "aligned" else folders.load_unaligned
  return loader(path, split, load_size=load_size, preprocess=preprocess,
                channels_a=channels[0], channels_b=channels[1])
