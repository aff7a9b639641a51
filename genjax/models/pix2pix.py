"""Pix2Pix (Isola et al. 2017): a generator ``G`` from the source image A to the target B, and a
conditional PatchGAN ``D`` that judges B (real or generated) together with A, concatenated on
channels. The reference's defaults: ``unet_256`` with BatchNorm and dropout (54,413,955
parameters for RGB -> RGB) against the 70 x 70 ``basic`` PatchGAN (2,768,705 with 6 input
channels); trained by :mod:`genjax.methods.translation` with the cGAN loss plus 100 x L1.
Networks: :mod:`genjax.models.translation_nets`.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from genjax.models import translation_nets

METHOD = "translation"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          input_shape: tuple[int, int, int] = (256, 256, 3), netG: str = "unet_256",  # pylint: disable=invalid-name
          netD: str = "basic", ngf: int = 64, ndf: int = 64, n_layers_D: int = 3,  # pylint: disable=invalid-name
          norm: str = "batch", use_dropout: bool = True) -> dict[str, nnx.Module]:
  """``image_shape`` is B's (the output), ``input_shape`` A's (given by the method)."""
  a, b = input_shape[-1], image_shape[-1]
  d = translation_nets.define_D(netD, a + b, ndf=ndf, n_layers_D=n_layers_D, norm=norm,
                                axis_name=axis_name, dtype=dtype, rngs=rngs)
  d.spec = dataclasses.replace(d.spec, sees_condition=True)
  return {"G": translation_nets.define_G(netG, a, b, ngf=ngf, norm=norm, use_dropout=use_dropout,
                                         axis_name=axis_name, dtype=dtype, rngs=rngs),
          "D": d}
