"""The image-to-image translation networks of pix2pix and CycleGAN (Isola et al. 2017; Zhu et al.
2017), by the names of junyanz/pytorch-CycleGAN-and-pix2pix's ``define_G``/``define_D``.

Generators, ``(B, H, W, input_nc) -> (B, H, W, output_nc)`` in [-1, 1] (tanh):

- ``unet_<S>`` (:class:`UnetGenerator`, S = 32, 64, 128, 256): a U-Net of ``log2(S)`` 4x4
  stride-2 levels that takes an S x S input to 1 x 1 and back, the skips concatenated. Down:
  [LeakyReLU(0.2)] Conv(4, 2, 1) [norm]; up: ReLU, ConvTranspose(4, 2, 1), norm (tanh at the top),
  Dropout(0.5) in the ``ngf*8`` levels between the fourth and the innermost when ``use_dropout``.
  A level's skip is its LeakyReLU-activated input, as the reference's in-place LeakyReLU makes it
  (the same function as the raw input: a ReLU follows every concatenation).
  ``unet_256`` with BatchNorm, ``ngf=64``, 3 -> 3 channels: 54,413,955 parameters.
- ``resnet_<n>blocks`` (:class:`ResnetGenerator`, the reference's n = 6, 9, or any n >= 1):
  ReflectionPad(3) Conv(7), two Conv(3, 2, 1) downsamples, n residual blocks (ReflectionPad(1)
  Conv(3), norm, ReLU, [Dropout], ReflectionPad(1) Conv(3), norm), two ConvTranspose(3, 2, 1,
  output_padding=1) upsamples, ReflectionPad(3) Conv(7), tanh; norm and ReLU after every inner
  conv. With InstanceNorm and ``ngf=64``: 11,378,179 (9 blocks) and 7,837,699 (6 blocks) parameters.

Discriminators return the logit map ``(B, h, w)`` (no sigmoid: the loss applies it):

- ``basic`` / ``n_layers`` (:class:`PatchDiscriminator`): the PatchGAN, Conv(4, 2, 1) LeakyReLU,
  then ``n_layers - 1`` x [Conv(4, 2, 1), norm, LeakyReLU] with ``ndf * min(2^i, 8)`` channels, one
  stride-1 such layer and a Conv(4, 1, 1) to one channel; ``basic`` is ``n_layers=3``, the 70 x 70
  PatchGAN: 2,768,705 parameters with 6 input channels and BatchNorm (pix2pix), 2,764,737 with 3
  and InstanceNorm (CycleGAN).
- ``pixel`` (:class:`PatchDiscriminator` of 1 x 1 convs): the 1 x 1 PixelGAN.

Norms (``norm``): ``batch`` (:class:`~genjax.models.layers.TorchBatchNorm`, PyTorch's running
statistics), ``instance`` (:class:`~genjax.models.layers.InstanceNorm`, no affine, no running
statistics) or ``none``; as in the reference, convs followed by a norm have a bias only with
InstanceNorm. Initialisation is the reference's ``init_weights('normal', 0.02)``.

Every network names its layers as the reference's ``state_dict`` does (:meth:`torch_layers`), so
:mod:`genjax.torch_weights` reads and writes the reference's ``.pth`` files.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors
from genjax.errors import ConfigError
from genjax.models import layers
from genjax.models.spec import Spec

Array = jax.Array
NORMS = ("batch", "instance", "none")
DROPOUT = 0.5


def _norm(kind: str, features: int, *, axis_name, dtype, rngs) -> nnx.Module:
  if kind == "batch":
    return layers.TorchBatchNorm(features, axis_name=axis_name, dtype=dtype, rngs=rngs)
  return layers.InstanceNorm() if kind == "instance" else layers.Identity()


def _leaky(x: Array) -> Array:
  return nnx.leaky_relu(x, 0.2)


class UnetGenerator(nnx.Module):
  """The pix2pix U-Net with ``num_downs`` levels (``unet_<2^num_downs>``); see the module doc.

  Level ``i`` (0 = outermost) maps ``c[i-1]`` channels (``input_nc`` at level 0) down to
  ``c[i] = ngf * min(2^i, 8)`` and, on the way up, ``2 c[i]`` (``c[i]`` at the innermost level)
  back to ``c[i-1]`` (``output_nc`` at level 0).
  """

  def __init__(self, input_nc: int, output_nc: int, num_downs: int, *, ngf: int = 64,
               norm: str = "batch", use_dropout: bool = False, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    if num_downs < 5:
      raise ConfigError(f"the U-Net needs num_downs >= 5 (inputs of 32 px or more), got "
                        f"{num_downs}")
    self.name, self.num_downs, self.axis_name = f"unet_{2 ** num_downs}", num_downs, axis_name
    self.spec = Spec(takes=("rng",) if use_dropout else ())
    bias = norm == "instance"
    inner = [ngf * min(2 ** i, 8) for i in range(num_downs)]
    outer = [output_nc] + inner[:-1]
    last = num_downs - 1
    self.down, self.down_norm, self.up, self.up_norm = (nnx.List() for _ in range(4))
    for i in range(num_downs):
      self.down.append(layers.Conv(input_nc if i == 0 else outer[i], inner[i], 4, 2, 1,
                                   use_bias=bias, dtype=dtype, rngs=rngs))
      self.down_norm.append(_norm(norm if 0 < i < last else "none", inner[i],
                                  axis_name=axis_name, dtype=dtype, rngs=rngs))
      self.up.append(layers.ConvTranspose(inner[i] * (1 if i == last else 2), outer[i], 4, 2, 1,
                                          use_bias=bias or i == 0, dtype=dtype, rngs=rngs))
      self.up_norm.append(_norm(norm if i else "none", outer[i], axis_name=axis_name,
                                dtype=dtype, rngs=rngs))
    # The reference's `num_downs - 5` intermediate ngf*8 levels carry the dropout.
    self.dropout = tuple(use_dropout and 4 <= i < last for i in range(num_downs))

  def __call__(self, x: Array, rng: Array | None = None) -> Array:
    size = 2 ** self.num_downs
    if x.shape[1] % size or x.shape[2] % size:
      raise ValueError(f"{self.name} needs H and W divisible by {size}, got {x.shape[1:3]}")
    skips, h = [], x
    for i in range(self.num_downs):
      if i:
        h = _leaky(h)
        skips.append(h)
      h = self.down_norm[i](self.down[i](h))
    for i in reversed(range(1, self.num_downs)):
      h = self.up_norm[i](self.up[i](nnx.relu(h)))
      if self.dropout[i]:
        h = layers.dropout(h, DROPOUT, jax.random.fold_in(rng, i) if rng is not None else None,
                           self.axis_name)
      h = jnp.concatenate([skips[i - 1], h], axis=-1)
    return jnp.tanh(self.up[0](nnx.relu(h)))

  def torch_layers(self) -> Iterator[tuple[str, nnx.Module]]:
    """``(module name in the reference's state_dict, layer)`` in the state_dict's order: the
    levels nest (``model.model.1.model.3.model...``) as UnetSkipConnectionBlocks, each a
    Sequential [LeakyReLU, down conv, norm, <inner level>, ReLU, up conv, norm, Dropout] without
    the entries a level lacks."""
    last = self.num_downs - 1
    prefixes = ["model.model"]
    for i in range(1, self.num_downs):
      prefixes.append(prefixes[-1] + (".1.model" if i == 1 else ".3.model"))
    for i in range(self.num_downs):
      yield f"{prefixes[i]}.{0 if i == 0 else 1}", self.down[i]
      if 0 < i < last:
        yield f"{prefixes[i]}.2", self.down_norm[i]
    for i in reversed(range(self.num_downs)):
      up = 3 if i in (0, last) else 5
      yield f"{prefixes[i]}.{up}", self.up[i]
      if i:
        yield f"{prefixes[i]}.{up + 1}", self.up_norm[i]


class ResnetBlock(nnx.Module):
  """``x + [pad, conv3, norm, ReLU, (dropout), pad, conv3, norm](x)`` with reflection padding."""

  def __init__(self, dim: int, *, norm: str, use_dropout: bool, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    bias = norm == "instance"
    self.conv1 = layers.Conv(dim, dim, 3, use_bias=bias, dtype=dtype, rngs=rngs)
    self.norm1 = _norm(norm, dim, axis_name=axis_name, dtype=dtype, rngs=rngs)
    self.conv2 = layers.Conv(dim, dim, 3, use_bias=bias, dtype=dtype, rngs=rngs)
    self.norm2 = _norm(norm, dim, axis_name=axis_name, dtype=dtype, rngs=rngs)
    self.use_dropout, self.axis_name = use_dropout, axis_name

  def __call__(self, x: Array, rng: Array | None = None) -> Array:
    h = nnx.relu(self.norm1(self.conv1(layers.reflect_pad(x, 1))))
    if self.use_dropout:
      h = layers.dropout(h, DROPOUT, rng, self.axis_name)
    return x + self.norm2(self.conv2(layers.reflect_pad(h, 1)))

  def torch_layers(self, prefix: str) -> Iterator[tuple[str, nnx.Module]]:
    second = 6 if self.use_dropout else 5  # the Dropout entry shifts the second conv
    yield from ((f"{prefix}.conv_block.1", self.conv1), (f"{prefix}.conv_block.2", self.norm1),
                (f"{prefix}.conv_block.{second}", self.conv2),
                (f"{prefix}.conv_block.{second + 1}", self.norm2))


class ResnetGenerator(nnx.Module):
  """The CycleGAN ResNet generator with ``n_blocks`` residual blocks (``resnet_<n>blocks``);
  see the module doc. H and W must be multiples of 4 for the output to have the input's size."""

  def __init__(self, input_nc: int, output_nc: int, n_blocks: int, *, ngf: int = 64,
               norm: str = "batch", use_dropout: bool = False, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    self.name, self.axis_name = f"resnet_{n_blocks}blocks", axis_name
    self.spec = Spec(takes=("rng",) if use_dropout else ())
    bias = norm == "instance"
    norm_of = functools.partial(_norm, norm, axis_name=axis_name, dtype=dtype, rngs=rngs)
    self.stem = layers.Conv(input_nc, ngf, 7, use_bias=bias, dtype=dtype, rngs=rngs)
    self.stem_norm = norm_of(ngf)
    self.down, self.down_norm, self.up, self.up_norm = (nnx.List() for _ in range(4))
    for c in (ngf, 2 * ngf):
      self.down.append(layers.Conv(c, 2 * c, 3, 2, 1, use_bias=bias, dtype=dtype, rngs=rngs))
      self.down_norm.append(norm_of(2 * c))
    self.blocks = nnx.List([ResnetBlock(4 * ngf, norm=norm, use_dropout=use_dropout,
                                        axis_name=axis_name, dtype=dtype, rngs=rngs)
                            for _ in range(n_blocks)])
    for c in (4 * ngf, 2 * ngf):
      self.up.append(layers.ConvTranspose(c, c // 2, 3, 2, 1, 1, use_bias=bias, dtype=dtype,
                                          rngs=rngs))
      self.up_norm.append(norm_of(c // 2))
    self.out = layers.Conv(ngf, output_nc, 7, dtype=dtype, rngs=rngs)

  def __call__(self, x: Array, rng: Array | None = None) -> Array:
    h = nnx.relu(self.stem_norm(self.stem(layers.reflect_pad(x, 3))))
    for conv, norm in zip(self.down, self.down_norm):
      h = nnx.relu(norm(conv(h)))
    for i, block in enumerate(self.blocks):
      h = block(h, jax.random.fold_in(rng, i) if rng is not None else None)
    for conv, norm in zip(self.up, self.up_norm):
      h = nnx.relu(norm(conv(h)))
    return jnp.tanh(self.out(layers.reflect_pad(h, 3)))

  def torch_layers(self) -> Iterator[tuple[str, nnx.Module]]:
    """``(module name in the reference's state_dict, layer)``: one Sequential ``model`` of
    [pad, conv, norm, ReLU], 2 x [conv, norm, ReLU], the blocks, 2 x [conv, norm, ReLU],
    [pad, conv, tanh]."""
    yield from (("model.1", self.stem), ("model.2", self.stem_norm))
    for j, (conv, norm) in enumerate(zip(self.down, self.down_norm)):
      yield from ((f"model.{4 + 3 * j}", conv), (f"model.{5 + 3 * j}", norm))
    for k, block in enumerate(self.blocks):
      yield from block.torch_layers(f"model.{10 + k}")
    first_up = 10 + len(self.blocks)
    for j, (conv, norm) in enumerate(zip(self.up, self.up_norm)):
      yield from ((f"model.{first_up + 3 * j}", conv), (f"model.{first_up + 3 * j + 1}", norm))
    yield f"model.{first_up + 7}", self.out


class PatchDiscriminator(nnx.Module):
  """A fully convolutional discriminator: Conv LeakyReLU, ``len(widths) - 1`` x [Conv, norm,
  LeakyReLU], Conv to one channel; returns the logit map (B, h, w).

  ``widths``: the output channels of every conv but the last; ``strides`` likewise. The PatchGAN
  uses 4x4 kernels with padding 1, the PixelGAN 1x1 kernels with padding 0 (and, as in the
  reference, a last conv with a bias only under InstanceNorm).
  """

  def __init__(self, input_nc: int, widths: tuple[int, ...], strides: tuple[int, ...], *,
               kernel: int, padding: int, name: str, norm: str = "batch",
               out_bias: bool = True, torch_prefix: str = "model", axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    self.name, self.torch_prefix, self.spec = name, torch_prefix, Spec()
    bias = norm == "instance"
    conv = functools.partial(layers.Conv, kernel_size=kernel, padding=padding, dtype=dtype,
                             rngs=rngs)
    self.first = conv(input_nc, widths[0], stride=strides[0])
    self.convs, self.norms = nnx.List(), nnx.List()
    for c_in, c_out, stride in zip(widths, widths[1:], strides[1:]):
      self.convs.append(conv(c_in, c_out, stride=stride, use_bias=bias))
      self.norms.append(_norm(norm, c_out, axis_name=axis_name, dtype=dtype, rngs=rngs))
    self.out = conv(widths[-1], 1, stride=1, use_bias=out_bias or bias)

  def __call__(self, x: Array) -> Array:
    h = _leaky(self.first(x))
    for conv, norm in zip(self.convs, self.norms):
      h = _leaky(norm(conv(h)))
    return self.out(h)[..., 0]

  def torch_layers(self) -> Iterator[tuple[str, nnx.Module]]:
    """``(module name in the reference's state_dict, layer)``: one Sequential (``model``, or
    ``net`` for the PixelGAN) of conv, LeakyReLU, n x [conv, norm, LeakyReLU], conv."""
    p = self.torch_prefix
    yield f"{p}.0", self.first
    for j, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      yield from ((f"{p}.{2 + 3 * j}", conv), (f"{p}.{3 + 3 * j}", norm))
    yield f"{p}.{2 + 3 * len(self.convs)}", self.out


def n_layer_discriminator(input_nc: int, *, ndf: int = 64, n_layers: int = 3,
                          name: str = "n_layers", **kwargs) -> PatchDiscriminator:
  """The PatchGAN of ``n_layers`` stride-2 convs (``basic``: 3, the 70x70 PatchGAN)."""
  widths = tuple(ndf * min(2 ** i, 8) for i in range(n_layers + 1))
  return PatchDiscriminator(input_nc, widths, (2,) * n_layers + (1,), kernel=4, padding=1,
                            name=name, **kwargs)


def pixel_discriminator(input_nc: int, *, ndf: int = 64, **kwargs) -> PatchDiscriminator:
  """The 1x1 PixelGAN: every pixel classified on its own."""
  return PatchDiscriminator(input_nc, (ndf, 2 * ndf), (1, 1), kernel=1, padding=0, name="pixel",
                            out_bias=False, torch_prefix="net", **kwargs)


UNETS: dict[str, Callable[..., nnx.Module]] = {
    f"unet_{2 ** n}": functools.partial(UnetGenerator, num_downs=n) for n in (5, 6, 7, 8)}
_RESNET = re.compile(r"resnet_([1-9][0-9]*)blocks")  # any n >= 1; the reference's are 6 and 9
DISCRIMINATORS = ("basic", "n_layers", "pixel")


def define_G(name: str, input_nc: int, output_nc: int, *, ngf: int = 64, norm: str = "batch",
             use_dropout: bool = False, axis_name=None, dtype=None,
             rngs: nnx.Rngs) -> nnx.Module:
  """The generator ``name`` (``unet_32|64|128|256`` or ``resnet_<n>blocks``: the reference's
  ``resnet_6blocks`` and ``resnet_9blocks``, or any other n >= 1)."""
  resnet = _RESNET.fullmatch(name)
  if resnet is None and name not in UNETS:
    raise ConfigError(f"unknown generator {name!r}; valid: {', '.join(UNETS)}, resnet_<n>blocks")
  errors.check_choice("norm", norm, NORMS, ConfigError)
  make = (functools.partial(ResnetGenerator, n_blocks=int(resnet[1])) if resnet else
          UNETS[name])
  return make(input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout,
              axis_name=axis_name, dtype=dtype, rngs=rngs)


def define_D(name: str, input_nc: int, *, ndf: int = 64, n_layers_D: int = 3,
             norm: str = "batch", axis_name=None, dtype=None,
             rngs: nnx.Rngs) -> PatchDiscriminator:
  """The discriminator ``name``: ``basic`` (the 70x70 PatchGAN), ``n_layers`` (a PatchGAN of
  ``n_layers_D`` stride-2 convs) or ``pixel`` (the 1x1 PixelGAN)."""
  errors.check_choice("discriminator", name, DISCRIMINATORS, ConfigError)
  errors.check_choice("norm", norm, NORMS, ConfigError)
  kwargs = dict(ndf=ndf, norm=norm, axis_name=axis_name, dtype=dtype, rngs=rngs)
  if name == "pixel":
    return pixel_discriminator(input_nc, **kwargs)
  if name == "n_layers" and n_layers_D < 1:
    raise ConfigError(f"n_layers_D must be >= 1, got {n_layers_D}")
  return n_layer_discriminator(input_nc, n_layers=3 if name == "basic" else n_layers_D,
                               name=name, **kwargs)
