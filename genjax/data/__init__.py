"""Data loading: in-memory sources, a resumable batch iterator and on-device preprocessing."""

from genjax.data.pipeline import BatchIterator
from genjax.data.pipeline import prefetch
from genjax.data.preprocess import binarize
from genjax.data.preprocess import corrupt
from genjax.data.preprocess import CORRUPTIONS
from genjax.data.preprocess import gcn_extremes
from genjax.data.preprocess import gcn_minmax
from genjax.data.preprocess import global_contrast_normalize
from genjax.data.preprocess import NORMALIZATIONS
from genjax.data.preprocess import RESIZE_MODES
from genjax.data.preprocess import random_crop_flip
from genjax.data.preprocess import to_float
from genjax.data.sources import DATASETS
from genjax.data.sources import DatasetInfo
from genjax.data.sources import domain_groups
from genjax.data.sources import Examples
from genjax.data.sources import image_shapes
from genjax.data.sources import labelled_subset
from genjax.data.sources import LAYOUTS
from genjax.data.catalog import load
from genjax.data.catalog import load_config
from genjax.data.catalog import select_classes
from genjax.data.sources import paired
from genjax.data.sources import PREPROCESS
from genjax.data.sources import SPLITS

__all__ = [
    "BatchIterator",
    "CORRUPTIONS",
    "DATASETS",
    "DatasetInfo",
    "Examples",
    "LAYOUTS",
    "NORMALIZATIONS",
    "PREPROCESS",
    "RESIZE_MODES",
    "SPLITS",
    "binarize",
    "corrupt",
    "domain_groups",
    "gcn_extremes",
    "gcn_minmax",
    "global_contrast_normalize",
    "image_shapes",
    "labelled_subset",
    "load",
    "load_config",
    "paired",
    "prefetch",
    "random_crop_flip",
    "select_classes",
    "to_float",
]
