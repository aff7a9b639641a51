"""Training methods (paradigms), by the name a model family's ``METHOD`` gives."""

from __future__ import annotations

from genjax import errors
from genjax.errors import ConfigError
from genjax.methods.adversarial import Adversarial
from genjax.methods.autoencoding import Autoencoding
from genjax.methods.base import Method
from genjax.methods.base import TrainState
from genjax.methods.classification import Classification
from genjax.methods.fanogan import FAnoGAN
from genjax.methods.one_class import OneClass
from genjax.methods.translation import Translation

METHODS: dict[str, type[Method]] = {"autoencoding": Autoencoding, "adversarial": Adversarial,
                                     "classification": Classification,
                                     "translation": Translation, "one_class": OneClass,
                                     "fanogan": FAnoGAN}


def get(name: str) -> type[Method]:
  errors.check_choice("method", name, METHODS, ConfigError, listing="valid names")
  return METHODS[name]


__all__ = ["METHODS", "Method", "TrainState", "get"]
