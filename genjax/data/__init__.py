"""Data loading: in-memory sources, a resumable batch iterator and on-device preprocessing."""

from genjax.data.pipeline import BatchIterator
from genjax.data.pipeline import prefetch
from genjax.data.preprocess import binarize
from genjax.data.preprocess import corrupt
from genjax.data.preprocess import CORRUPTIONS
from genjax.data.preprocess import RESIZE_MODES
from genjax.data.preprocess import to_float
from genjax.data.sources import DATASETS
from genjax.data.sources import DatasetInfo
from genjax.data.sources import labelled_subset
from genjax.data.sources import load
from genjax.data.sources import SPLITS

__all__ = [
    "BatchIterator",
    "CORRUPTIONS",
    "DATASETS",
    "DatasetInfo",
    "RESIZE_MODES",
    "SPLITS",
    "binarize",
    "corrupt",
    "labelled_subset",
    "load",
    "prefetch",
    "to_float",
]
