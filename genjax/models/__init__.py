"""Model families. A family is one module with ``METHOD`` (how it trains) and
``build(image_shape, *, rngs, axis_name, dtype, **kwargs) -> {role: nnx.Module}``; its
keyword arguments with defaults are the family's ``config.model`` keys."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from genjax import errors
from genjax.errors import ConfigError
from genjax.models import acgan
from genjax.models import ae
from genjax.models import cgan
from genjax.models import classifier
from genjax.models import cyclegan
from genjax.models import dcgan
from genjax.models import fanogan
from genjax.models import infogan
from genjax.models import lenet
from genjax.models import lenet_ae
from genjax.models import pix2pix
from genjax.models import sagan
from genjax.models import sgan
from genjax.models import sngan
from genjax.models import vae

# WGAN, WGAN-GP, LSGAN and the hinge GAN are DCGAN's networks with another loss/penalty: their
# configs select them (experiments/configs/{wgan,wgan_gp,lsgan,hinge}_*.py), no model file needed.
FAMILIES: dict[str, ModuleType] = {"ae": ae, "vae": vae, "dcgan": dcgan,
                                   "classifier": classifier, "sngan": sngan, "sagan": sagan,
                                   "cgan": cgan, "acgan": acgan, "infogan": infogan,
                                   "sgan": sgan, "pix2pix": pix2pix, "cyclegan": cyclegan,
                                   "deep_svdd": lenet, "lenet_ae": lenet_ae,
                                   "fanogan": fanogan}

# The config.model keys that are a width or a code's size: at least 1 (the family's other
# integer keys, counts such as InfoGAN's num_continuous, at least 0).
SIZES = ("ngf", "ndf", "width", "latent_dim", "features", "q_width", "rep_dim", "num_classes")

# Arguments of build() supplied by the launcher rather than by config.model.
_LAUNCHER_ARGS = ("rngs", "axis_name", "dtype", "input_shape")


def get(name: str) -> ModuleType:
  errors.check_choice("model", name, FAMILIES, ConfigError, listing="valid names")
  return FAMILIES[name]


def defaults(name: str) -> dict[str, Any]:
  """The family's config.model keys and their default values."""
  params = inspect.signature(get(name).build).parameters.values()
  return {p.name: p.default for p in params
          if p.kind == p.KEYWORD_ONLY and p.name not in _LAUNCHER_ARGS}
