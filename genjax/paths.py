"""Where genjax finds what it does not ship: local copies of datasets and the domain classifiers.

Each is an environment variable with a documented default, and a config key overrides it for
one run:

- ``GENJAX_DATA_DIR``: local datasets, one folder per dataset (``$GENJAX_DATA_DIR/mnist`` holds
  MNIST's four IDX files). Default: ``../shared/data`` beside a checkout of genjax. Per run:
  ``--config.dataset.local_dir``; per dataset: ``GENJAX_MNIST_DIR``, ``GENJAX_FASHION_MNIST_DIR``.
- ``GENJAX_CLASSIFIER_DIR``: the domain classifiers of the classifier-FID/KID/IS, one genjax
  ``classifier`` run per dataset (``$GENJAX_CLASSIFIER_DIR/fashion_mnist``). Default: the
  checkout's ``experiments/classifiers``. Per run: ``--config.eval.weights``.

The defaults are the repository's layout, so they exist only where genjax runs from a checkout
(its source tree, or ``pip install -e`` of it); an installed package has none, and where one is
needed the error names the variable to set.
"""

from __future__ import annotations

import os
import pathlib

_SOURCE = pathlib.Path(__file__).resolve().parents[1]
# The repository genjax runs from: the source tree with the project's pyproject.toml beside it.
CHECKOUT: pathlib.Path | None = _SOURCE if (_SOURCE / "pyproject.toml").is_file() else None

DATA_DIR = "GENJAX_DATA_DIR"
CLASSIFIER_DIR = "GENJAX_CLASSIFIER_DIR"


def _location(variable: str, default: tuple[str, ...]) -> pathlib.Path | None:
  if value := os.environ.get(variable):
    return pathlib.Path(value).expanduser()
  return None if CHECKOUT is None else CHECKOUT.joinpath(*default).resolve()


def data_dir() -> pathlib.Path | None:
  """``$GENJAX_DATA_DIR``, else ``../shared/data`` beside the checkout, else None."""
  return _location(DATA_DIR, ("..", "shared", "data"))


def classifier_dir() -> pathlib.Path | None:
  """``$GENJAX_CLASSIFIER_DIR``, else the checkout's ``experiments/classifiers``, else None."""
  return _location(CLASSIFIER_DIR, ("experiments", "classifiers"))
