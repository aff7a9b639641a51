"""CycleGAN (Zhu et al. 2017): two generators, ``G_A`` from domain A to B and ``G_B`` back, and
two PatchGANs, ``D_A`` judging domain B (real, or ``G_A``'s) and ``D_B`` judging domain A, trained
by :mod:`genjax.methods.translation` with the LSGAN loss, cycle consistency both ways and the
identity terms, on unpaired examples. The reference's defaults: ``resnet_9blocks`` with
InstanceNorm (11,378,179 parameters; ``resnet_6blocks``: 7,837,699) and the ``basic`` PatchGAN
with 3 input channels (2,764,737). The role names are the reference's, so ``latest_net_G_A.pth``
and its siblings load by role (:mod:`genjax.torch_weights`).
"""

from __future__ import annotations

from flax import nnx

from genjax.models import translation_nets

METHOD = "translation"


def build(image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          input_shape: tuple[int, int, int] = (256, 256, 3), netG: str = "resnet_9blocks",  # pylint: disable=invalid-name
          netD: str = "basic", ngf: int = 64, ndf: int = 64, n_layers_D: int = 3,  # pylint: disable=invalid-name
          norm: str = "instance", use_dropout: bool = False) -> dict[str, nnx.Module]:
  """``image_shape`` is domain B's, ``input_shape`` domain A's (given by the method)."""
  a, b = input_shape[-1], image_shape[-1]
  common = dict(axis_name=axis_name, dtype=dtype, rngs=rngs)
  g = lambda i, o: translation_nets.define_G(netG, i, o, ngf=ngf, norm=norm,  # pylint: disable=unnecessary-lambda-assignment
                                             use_dropout=use_dropout, **common)
  d = lambda c: translation_nets.define_D(netD, c, ndf=ndf, n_layers_D=n_layers_D, norm=norm,  # pylint: disable=unnecessary-lambda-assignment
                                          **common)
  return {"G_A": g(a, b), "G_B": g(b, a), "D_A": d(b), "D_B": d(a)}
