"""Training methods (paradigms), by the name a model family's ``METHOD`` gives."""

from __future__ import annotations

from genjax.errors import ConfigError
from genjax.methods.adversarial import Adversarial
from genjax.methods.autoencoding import Autoencoding
from genjax.methods.base import Method
from genjax.methods.base import TrainState
from genjax.methods.classification import Classification

METHODS: dict[str, type[Method]] = {"autoencoding": Autoencoding, "adversarial": Adversarial,
                                     "classification": Classification}


def get(name: str) -> type[Method]:
  if name not in METHODS:
    raise ConfigError(f"unknown method {name!r}; valid names: {', '.join(METHODS)}")
  return METHODS[name]


__all__ = ["METHODS", "Method", "TrainState", "get"]
