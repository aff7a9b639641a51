"""PyTorch peers of the benchmarked genjax models: the same networks and the same train step.

The networks mirror ``genjax.models.layers.ConvEncoder``/``ConvDecoder`` layer for layer (so at
64 px with nz=100, ngf=ndf=64 and 3 channels they are exactly pytorch/examples' DCGAN), and each
peer's ``step`` does the work of the corresponding genjax method on the same uint8 batch:

* :class:`DCGANPeer`: pytorch/examples' update order. The generator runs once; the discriminator
  takes one Adam step on the real batch and the detached fakes (BCE with logits, summed); then
  the generator takes one step through the updated discriminator (non-saturating loss).
* :class:`VAEPeer`: Gaussian encoder, reparameterised sample, Bernoulli decoder, loss
  ``mean(nll + beta * KL)`` and one Adam step.
* :class:`Pix2PixPeer` and :class:`CycleGANPeer`: junyanz/pytorch-CycleGAN-and-pix2pix's
  networks (:func:`define_G`, :func:`define_D`: the reference's module trees, so their
  ``state_dict`` keys are the reference's) and its ``optimize_parameters``, on uint8 ``A``/``B``
  batches at ``load_size`` that the step crops and flips as the reference's data loader does.

DCGAN and the VAE preprocess on the device as genjax does (scale to ``value_range``, then
centre-pad or bilinearly upsample). All run BatchNorm in train mode (momentum 0.1, eps 1e-5) and
compute in float32 or, for ``dtype="bfloat16"``, under ``torch.autocast`` with losses in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import random
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = ("float32", "bfloat16")

# pytorch/examples' DCGAN at 64 px, nz=100, ngf=ndf=64, 3 channels.
PYTORCH_EXAMPLES_DCGAN64 = {"generator": 3_576_704, "discriminator": 2_765_568}


def num_up_layers(image_size: int, base: int = 4) -> int:
  """Number of x2 stages from ``base`` to ``image_size`` (a power-of-two multiple of ``base``)."""
  n = math.log2(image_size / base) if image_size >= base else -1
  if n < 1 or n != int(n):
    raise ValueError(f"image_size must be {base} times a power of two, got {image_size}")
  return int(n)


def conv_encoder(in_channels: int, out_features: int, image_size: int, width: int, *,
                 out_bias: bool = False) -> nn.Sequential:
  """The DCGAN discriminator body; ``(B, C, S, S) -> (B, out_features, 1, 1)``."""
  n = num_up_layers(image_size)
  mods: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1, bias=False),
                           nn.LeakyReLU(0.2)]
  c = width
  for _ in range(n - 1):
    mods += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
    c *= 2
  mods.append(nn.Conv2d(c, out_features, 4, 1, 0, bias=out_bias))
  return nn.Sequential(*mods)


def conv_decoder(latent_dim: int, out_channels: int, image_size: int, width: int, *,
                 out_bias: bool = False) -> nn.Sequential:
  """The DCGAN generator body; ``(B, latent_dim, 1, 1) -> (B, out_channels, S, S)`` logits."""
  n = num_up_layers(image_size)
  mods: list[nn.Module] = []
  c_in = latent_dim
  for i, c in enumerate(width * 2 ** j for j in reversed(range(n))):
    stride, padding = (1, 0) if i == 0 else (2, 1)
    mods += [nn.ConvTranspose2d(c_in, c, 4, stride, padding, bias=False), nn.BatchNorm2d(c),
             nn.ReLU()]
    c_in = c
  mods.append(nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1, bias=out_bias))
  return nn.Sequential(*mods)


def init_weights_(module: nn.Module) -> None:
  """DCGAN init: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)


def count_params(module: nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())


def preprocess(images: torch.Tensor, *, value_range: tuple[float, float], image_size: int,
               resize: str) -> torch.Tensor:
  """uint8 NCHW -> float32 in ``value_range`` at ``image_size``, as ``genjax.data.to_float``.

  ``'pad'`` centres the image on zeros (odd extra pixels bottom/right); ``'resize'`` upsamples
  bilinearly with half-pixel centres (downsampling would differ: JAX antialiases).
  """
  lo, hi = value_range
  h, w = images.shape[-2:]
  if resize == "pad" and (h, w) != (image_size, image_size):
    top, left = (image_size - h) // 2, (image_size - w) // 2
    images = F.pad(images, (left, image_size - w - left, top, image_size - h - top))
  x = images.float() * ((hi - lo) / 255.0) + lo
  if resize == "resize" and (h, w) != (image_size, image_size):
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp(lo, hi)
  return x


class Peer:
  """A model and its optimizer(s); ``step(images)`` is one training update."""

  def __init__(self, *, dtype: str, device: str | torch.device, value_range, image_size: int,
               resize: str, channels_last: bool):
    if dtype not in DTYPES:
      raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    self.dtype = dtype
    self.device = torch.device(device)
    self.value_range = tuple(float(v) for v in value_range)
    self.image_size = image_size
    self.resize = resize
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

  def networks(self) -> dict[str, nn.Module]:
    raise NotImplementedError

  def num_params(self) -> dict[str, int]:
    return {role: count_params(net) for role, net in self.networks().items()}

  def _finish_init(self) -> None:
    for net in self.networks().values():
      init_weights_(net)
      net.to(self.device, memory_format=self.memory_format).train()

  def autocast(self) -> contextlib.AbstractContextManager:
    if self.dtype == "float32":
      return contextlib.nullcontext()
    return torch.autocast(self.device.type, dtype=torch.bfloat16)

  def inputs(self, images: torch.Tensor) -> torch.Tensor:
    x = preprocess(images.to(self.device, non_blocking=True), value_range=self.value_range,
                   image_size=self.image_size, resize=self.resize)
    return x.contiguous(memory_format=self.memory_format)

  def step(self, images: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, Any]:
    """One update on uint8 NCHW ``images``; ``noise`` replaces the random draw (for tests)."""
    raise NotImplementedError


def _adam(net: nn.Module, lr: float, b1: float, b2: float, eps: float) -> torch.optim.Adam:
  return torch.optim.Adam(net.parameters(), lr=lr, betas=(b1, b2), eps=eps)


class DCGANPeer(Peer):
  """pytorch/examples' DCGAN and its update.

  pytorch/examples also computes (and later discards) the discriminator's parameter gradients
  in the generator step; genjax does not, so by default neither does this peer
  (``d_grads_in_g_step=True`` restores the original behaviour).
  """

  def __init__(self, image_size: int, channels: int, latent_dim: int = 100, ngf: int = 64,
               ndf: int = 64, *, lr: float = 2e-4, b1: float = 0.5, b2: float = 0.999,
               eps: float = 1e-8, value_range=(-1.0, 1.0), resize: str = "pad",
               dtype: str = "float32", device: str | torch.device = "cpu",
               channels_last: bool = False, d_grads_in_g_step: bool = False):
    super().__init__(dtype=dtype, device=device, value_range=value_range, image_size=image_size,
                     resize=resize, channels_last=channels_last)
    self.latent_dim = latent_dim
    self.d_grads_in_g_step = d_grads_in_g_step
    self.generator = nn.Sequential(*conv_decoder(latent_dim, channels, image_size, ngf),
                                   nn.Tanh())
    self.discriminator = conv_encoder(channels, 1, image_size, ndf)
    self._finish_init()
    if (image_size, channels, latent_dim, ngf, ndf) == (64, 3, 100, 64, 64):
      assert self.num_params() == PYTORCH_EXAMPLES_DCGAN64, self.num_params()
    self.opt_g = _adam(self.generator, lr, b1, b2, eps)
    self.opt_d = _adam(self.discriminator, lr, b1, b2, eps)

  def networks(self) -> dict[str, nn.Module]:
    return {"generator": self.generator, "discriminator": self.discriminator}

  def step(self, images, noise=None):
    real = self.inputs(images)
    b = real.shape[0]
    if noise is None:
      noise = torch.randn(b, self.latent_dim, device=self.device)
    z = noise.to(self.device).view(b, self.latent_dim, 1, 1)
    g, d = self.generator, self.discriminator
    # Discriminator: real batch, then the generator's fakes (detached), one Adam step.
    self.opt_d.zero_grad(set_to_none=True)
    with self.autocast():
      real_logits = d(real).view(-1)
    loss_real = F.binary_cross_entropy_with_logits(real_logits.float(),
                                                   torch.ones_like(real_logits, dtype=torch.float))
    loss_real.backward()
    with self.autocast():
      fake = g(z)
      fake_logits = d(fake.detach()).view(-1)
    loss_fake = F.binary_cross_entropy_with_logits(
        fake_logits.float(), torch.zeros_like(fake_logits, dtype=torch.float))
    loss_fake.backward()
    self.opt_d.step()
    # Generator: through the updated discriminator, non-saturating loss.
    self.opt_g.zero_grad(set_to_none=True)
    if not self.d_grads_in_g_step:
      d.requires_grad_(False)
    with self.autocast():
      logits = d(fake).view(-1)
    loss_g = F.binary_cross_entropy_with_logits(logits.float(),
                                                torch.ones_like(logits, dtype=torch.float))
    loss_g.backward()
    d.requires_grad_(True)
    self.opt_g.step()
    with torch.no_grad():
      return {"loss_d": loss_real.detach() + loss_fake.detach(), "loss_g": loss_g.detach(),
              "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
              "d_fake": torch.sigmoid(fake_logits.detach().float()).mean()}


class VAEPeer(Peer):
  """genjax's VAE (ConvEncoder to mean and log-variance, ConvDecoder to Bernoulli logits)."""

  def __init__(self, image_size: int, channels: int, latent_dim: int = 16, width: int = 32, *,
               lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
               beta: float = 1.0, value_range=(0.0, 1.0), resize: str = "pad",
               dtype: str = "float32", device: str | torch.device = "cpu",
               channels_last: bool = False):
    super().__init__(dtype=dtype, device=device, value_range=value_range, image_size=image_size,
                     resize=resize, channels_last=channels_last)
    self.latent_dim = latent_dim
    self.beta = beta
    self.encoder = conv_encoder(channels, 2 * latent_dim, image_size, width, out_bias=True)
    self.decoder = conv_decoder(latent_dim, channels, image_size, width, out_bias=True)
    self._finish_init()
    self.opt = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], lr=lr,
                                betas=(b1, b2), eps=eps)

  def networks(self) -> dict[str, nn.Module]:
    return {"encoder": self.encoder, "decoder": self.decoder}

  def num_params(self) -> dict[str, int]:
    return {"model": count_params(self.encoder) + count_params(self.decoder)}

  def step(self, images, noise=None):
    x = self.inputs(images)
    b, k = x.shape[0], self.latent_dim
    self.opt.zero_grad(set_to_none=True)
    with self.autocast():
      h = self.encoder(x)
    h = h.float().flatten(1)
    mu, logvar = h[:, :k], h[:, k:]
    if noise is None:
      noise = torch.randn_like(mu)
    z = mu + torch.exp(0.5 * logvar) * noise.to(self.device)
    with self.autocast():
      logits = self.decoder(z.view(b, k, 1, 1))
    logits = logits.float()
    nll = (F.softplus(logits) - x * logits).flatten(1).sum(1)
    kl = 0.5 * (torch.exp(logvar) + mu.square() - 1.0 - logvar).sum(1)
    loss = (nll + self.beta * kl).mean()
    loss.backward()
    self.opt.step()
    return {"loss": loss.detach(), "nll": nll.detach().mean(), "kl": kl.detach().mean()}


# --- the reference's image-to-image translation networks -----------------------------------------
# junyanz/pytorch-CycleGAN-and-pix2pix's networks.py, written from its description with the same
# module trees, so that their state_dicts have the reference's keys (tests/test_translation_nets
# checks parameter counts and outputs against genjax.models.translation_nets).

def _torch_norm(norm):
  return {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d,
          "none": lambda channels: nn.Identity()}[norm]


class MaskedDropout(nn.Dropout):
  """``nn.Dropout`` (same place in the module tree, no parameters) whose mask can come from
  outside: while ``draw`` is set (see :func:`dropout_draws`), training-mode calls keep the
  elements where ``draw(index, shape)`` is 1 and scale them by ``1 / (1 - p)``. ``index`` names
  the layer as genjax's dropout keys do: the U-Net level (0 = outermost), the ResNet block."""

  def __init__(self, p: float, index: int):
    super().__init__(p)
    self.index = index
    self.draw: Callable[[int, tuple[int, ...]], torch.Tensor] | None = None

  def forward(self, x):
    if self.draw is None or not self.training:
      return super().forward(x)
    keep = self.draw(self.index, tuple(x.shape)).to(device=x.device, dtype=x.dtype)
    return x * keep * (1.0 / (1.0 - self.p))


@contextlib.contextmanager
def dropout_draws(net: nn.Module, draw: Callable[[int, tuple[int, ...]], torch.Tensor] | None):
  """Within the block, ``net``'s :class:`MaskedDropout` layers take their masks from ``draw``
  (None: their own random draws)."""
  layers = [m for m in net.modules() if isinstance(m, MaskedDropout)]
  for m in layers:
    m.draw = draw
  try:
    yield
  finally:
    for m in layers:
      m.draw = None


class TorchUnetLevel(nn.Module):
  """A UnetSkipConnectionBlock: ``model`` is [LeakyReLU, down conv, norm, inner level, ReLU,
  up conv, norm, Dropout] less what the level lacks (the top: no LeakyReLU, norms; a tanh; the
  bottom: no inner level, no down norm). Below the top, the output is ``cat(x, model(x))``; the
  LeakyReLU acts in place, as in the reference, so ``x`` is concatenated activated. ``index``:
  the level's depth (0 = top)."""

  def __init__(self, outer, inner_c, *, in_c=None, inner=None, top=False, norm="batch",
               dropout=False, index=0):
    super().__init__()
    make_norm, bias = _torch_norm(norm), norm == "instance"
    self.top = top
    down = nn.Conv2d(in_c or outer, inner_c, 4, 2, 1, bias=bias)
    if top:
      seq = [down, inner, nn.ReLU(True), nn.ConvTranspose2d(2 * inner_c, outer, 4, 2, 1),
             nn.Tanh()]
    elif inner is None:
      seq = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
             nn.ConvTranspose2d(inner_c, outer, 4, 2, 1, bias=bias), make_norm(outer)]
    else:
      seq = [nn.LeakyReLU(0.2, True), down, make_norm(inner_c), inner, nn.ReLU(True),
             nn.ConvTranspose2d(2 * inner_c, outer, 4, 2, 1, bias=bias), make_norm(outer)]
      seq += [MaskedDropout(0.5, index)] if dropout else []
    self.model = nn.Sequential(*seq)

  def forward(self, x):
    return self.model(x) if self.top else torch.cat([x, self.model(x)], 1)


class TorchUnet(nn.Module):

  def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=False):
    super().__init__()
    last = num_downs - 1
    level = TorchUnetLevel(8 * ngf, 8 * ngf, norm=norm, index=last)
    for j in range(num_downs - 5):
      level = TorchUnetLevel(8 * ngf, 8 * ngf, inner=level, norm=norm, dropout=use_dropout,
                             index=last - 1 - j)
    for index, mult in ((3, 4), (2, 2), (1, 1)):
      level = TorchUnetLevel(mult * ngf, 2 * mult * ngf, inner=level, norm=norm, index=index)
    self.model = TorchUnetLevel(output_nc, ngf, in_c=input_nc, inner=level, top=True, norm=norm)

  def forward(self, x):
    return self.model(x)


class TorchResnetBlock(nn.Module):

  def __init__(self, dim, norm, use_dropout, index=0):
    super().__init__()
    make_norm, bias = _torch_norm(norm), norm == "instance"
    seq = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim), nn.ReLU(True)]
    seq += [MaskedDropout(0.5, index)] if use_dropout else []
    seq += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
    self.conv_block = nn.Sequential(*seq)

  def forward(self, x):
    return x + self.conv_block(x)


class TorchResnet(nn.Module):

  def __init__(self, input_nc, output_nc, n_blocks, ngf=64, norm="batch", use_dropout=False):
    super().__init__()
    make_norm, bias = _torch_norm(norm), norm == "instance"
    seq = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf),
           nn.ReLU(True)]
    for c in (ngf, 2 * ngf):
      seq += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), make_norm(2 * c), nn.ReLU(True)]
    seq += [TorchResnetBlock(4 * ngf, norm, use_dropout, k) for k in range(n_blocks)]
    for c in (4 * ngf, 2 * ngf):
      seq += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
              make_norm(c // 2), nn.ReLU(True)]
    seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    self.model = nn.Sequential(*seq)

  def forward(self, x):
    return self.model(x)


class TorchPatchGAN(nn.Module):
  """NLayerDiscriminator: ``n_layers`` stride-2 4x4 convs, one stride-1, one to a channel."""

  def __init__(self, input_nc, ndf=64, n_layers=3, norm="batch"):
    super().__init__()
    make_norm, bias = _torch_norm(norm), norm == "instance"
    seq, mult = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
    for n in range(1, n_layers + 1):
      prev, mult = mult, min(2 ** n, 8)
      seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=bias),
              make_norm(ndf * mult), nn.LeakyReLU(0.2, True)]
    seq.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    self.model = nn.Sequential(*seq)

  def forward(self, x):
    return self.model(x)


class TorchPixelGAN(nn.Module):

  def __init__(self, input_nc, ndf=64, norm="batch"):
    super().__init__()
    make_norm, bias = _torch_norm(norm), norm == "instance"
    self.net = nn.Sequential(nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
                             nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), make_norm(2 * ndf),
                             nn.LeakyReLU(0.2, True), nn.Conv2d(2 * ndf, 1, 1, bias=bias))

  def forward(self, x):
    return self.net(x)


def define_G(name: str, input_nc: int, output_nc: int, **kw) -> nn.Module:
  """The reference's generator ``name`` (``unet_32|64|128|256``, ``resnet_6|9blocks``);
  ``kw``: ``ngf``, ``norm``, ``use_dropout``."""
  if name.startswith("unet_"):
    return TorchUnet(input_nc, output_nc, int(math.log2(int(name[5:]))), **kw)
  return TorchResnet(input_nc, output_nc, int(name[len("resnet_"):-len("blocks")]), **kw)


def define_D(name: str, input_nc: int, n_layers_D: int = 3, **kw) -> nn.Module:  # pylint: disable=invalid-name
  """The reference's discriminator ``name`` (``basic``, ``n_layers``, ``pixel``); ``kw``:
  ``ndf``, ``norm``."""
  if name == "pixel":
    return TorchPixelGAN(input_nc, **kw)
  return TorchPatchGAN(input_nc, n_layers=3 if name == "basic" else n_layers_D, **kw)


# --- Pix2Pix and CycleGAN -----------------------------------------------------------------------

def gan_loss(mode: str, logits: torch.Tensor, real: bool) -> torch.Tensor:
  """The reference's GANLoss on a logit map: 'vanilla' BCE with logits, 'lsgan' the mean squared
  error, against 1 (real) or 0 (fake) everywhere; in float32."""
  logits = logits.float()
  target = torch.full_like(logits, 1.0 if real else 0.0)
  if mode == "vanilla":
    return F.binary_cross_entropy_with_logits(logits, target)
  return F.mse_loss(logits, target)


class Batch(dict):
  """Named uint8 NCHW tensors (``A``, ``B``) that move to a device together, as one tensor does
  (``.to``, ``.is_cuda``)."""

  def to(self, device, non_blocking: bool = False) -> "Batch":
    return Batch({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

  @property
  def is_cuda(self) -> bool:
    return any(v.is_cuda for v in self.values())


@dataclasses.dataclass
class TranslationDraws:
  """The random draws of one translation step, given instead of drawn (a test replays another
  framework's); None draws them with torch / Python's ``random`` as the reference does.

  Attributes:
    crops: per image key (``A``, ``B``): ``(top, left, flip)``, each ``[n]`` (ints, ints, bools).
      Paired examples (Pix2Pix) take one draw for both, as the reference's aligned loader does.
    dropout: ``draw(role, purpose, index, shape) -> 0/1 mask`` of the NCHW ``shape``: for the
      generator ``role``'s call ``purpose`` (``fake``: G(A); CycleGAN also ``rec``: the cycle's
      second generator, ``idt``: the identity term), at dropout layer ``index`` (the U-Net level,
      the ResNet block).
    pool: per discriminator role (``D_A``, ``D_B``): ``(use_stored, slot)``, each ``[n]``: for
      each image met with the pool full, whether a stored image is shown (and replaced) instead,
      and which.
  """
  crops: dict[str, tuple[Any, Any, Any]] | None = None
  dropout: Callable[[str, str, int, tuple[int, ...]], torch.Tensor] | None = None
  pool: dict[str, tuple[Any, Any]] | None = None


class TorchImagePool:
  """The reference's ImagePool: while not full, an image is stored and shown; then, with
  probability 1/2, a random stored image is shown and replaced by the new one, else the new one
  is shown."""

  def __init__(self, size: int):
    self.size = size
    self.images: list[torch.Tensor] = []

  def query(self, images: torch.Tensor, draws=None) -> torch.Tensor:
    """The images to show the discriminator; ``draws``: see :class:`TranslationDraws`."""
    if self.size == 0:
      return images
    shown = []
    for j, image in enumerate(images.detach()):
      if len(self.images) < self.size:
        self.images.append(image)
        shown.append(image)
        continue
      if draws is None:
        use_stored = random.uniform(0, 1) > 0.5
        slot = random.randint(0, self.size - 1) if use_stored else 0
      else:
        use_stored, slot = bool(draws[0][j]), int(draws[1][j])
      if use_stored:
        shown.append(self.images[slot].clone())
        self.images[slot] = image
      else:
        shown.append(image)
    return torch.stack(shown)


class TranslationPeer(Peer):
  """What Pix2Pix and CycleGAN share: the generators and discriminators by role, the reference's
  input pipeline on the device (a random ``crop_size`` crop and a horizontal flip of the uint8
  images at ``load_size``, then ``[0, 255] -> value_range``), its GANLoss, and its optimizers: one
  Adam over all the generators and one over all the discriminators.

  ``paired``: A and B are the same examples (one crop and flip for both).
  """

  paired = True

  def __init__(self, generators: dict[str, nn.Module], discriminators: dict[str, nn.Module], *,
               crop_size: int | None, flip: bool, gan_mode: str, lr: float, b1: float, b2: float,
               eps: float, value_range, dtype: str, device, channels_last: bool):
    super().__init__(dtype=dtype, device=device, value_range=value_range,
                     image_size=crop_size or 0, resize="pad", channels_last=channels_last)
    if gan_mode not in ("vanilla", "lsgan"):
      raise ValueError(f"gan_mode must be 'vanilla' or 'lsgan', got {gan_mode!r}")
    self.crop_size, self.flip, self.gan_mode = crop_size, flip, gan_mode
    self.generators, self.discriminators = generators, discriminators
    self._finish_init()
    adam = dict(lr=lr, betas=(b1, b2), eps=eps)
    # The same update per parameter as genjax's Adam per network.
    self.opt_g = torch.optim.Adam(itertools.chain(*(n.parameters() for n in generators.values())),
                                  **adam)
    self.opt_d = torch.optim.Adam(
        itertools.chain(*(n.parameters() for n in discriminators.values())), **adam)

  def networks(self) -> dict[str, nn.Module]:
    return {**self.generators, **self.discriminators}

  def _crop_draws(self, n: int, h: int, w: int):
    s = self.crop_size
    top = torch.randint(0, h - s + 1, (n,)) if s else torch.zeros(n, dtype=torch.long)
    left = torch.randint(0, w - s + 1, (n,)) if s else torch.zeros(n, dtype=torch.long)
    flip = torch.rand(n) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
    return top, left, flip

  def inputs(self, batch: Batch, draws: TranslationDraws | None = None) -> dict[str, torch.Tensor]:
    """A and B cropped, flipped and scaled (floats NCHW in ``value_range``)."""
    out, shared = {}, None
    for key in ("A", "B"):
      images = batch[key].to(self.device, non_blocking=True)
      n, _, h, w = images.shape
      if draws is not None and draws.crops is not None:
        crop = draws.crops[key]
      elif self.paired and shared is not None:
        crop = shared
      else:
        crop = shared = self._crop_draws(n, h, w)
      top, left, flip = ([int(t) for t in v] for v in crop)
      s, parts = self.crop_size, []
      for j in range(n):
        x = images[j]
        if s:
          x = x[:, top[j]:top[j] + s, left[j]:left[j] + s]
        parts.append(x.flip(-1) if flip[j] else x)
      x = preprocess(torch.stack(parts), value_range=self.value_range, image_size=s or h,
                     resize="pad")
      out[key] = x.contiguous(memory_format=self.memory_format)
    return out

  def run(self, role: str, purpose: str, x: torch.Tensor, draws: TranslationDraws | None):
    """Generator ``role`` on ``x`` (under autocast), its dropout from ``draws`` where given."""
    g = self.generators[role]
    draw = None
    if draws is not None and draws.dropout is not None:
      draw = functools.partial(draws.dropout, role, purpose)
    with self.autocast(), dropout_draws(g, draw):
      return g(x)

  def judge(self, role: str, x: torch.Tensor) -> torch.Tensor:
    with self.autocast():
      return self.discriminators[role](x)

  def gan(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
    return gan_loss(self.gan_mode, logits, real)


def _l1(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
  return (x.float() - target).abs().mean()


class Pix2PixPeer(TranslationPeer):
  """The reference's Pix2PixModel.optimize_parameters: ``fake = G(A)`` once; D takes one Adam step
  on ``0.5 * (L(D(A, fake.detach()), 0) + L(D(A, B), 1))`` (the fake pair judged first, as the
  reference does); then G one step on ``L(D(A, fake), 1) + lambda_L1 * |fake - B|`` through the
  updated D (frozen). No pool (the reference's default for Pix2Pix)."""

  def __init__(self, input_nc: int = 3, output_nc: int = 3, *, netG: str = "unet_256",  # pylint: disable=invalid-name
               netD: str = "basic", ngf: int = 64, ndf: int = 64, n_layers_D: int = 3,  # pylint: disable=invalid-name
               norm: str = "batch", use_dropout: bool = True, gan_mode: str = "vanilla",
               lambda_L1: float = 100.0, crop_size: int | None = 256, flip: bool = True,  # pylint: disable=invalid-name
               lr: float = 2e-4, b1: float = 0.5, b2: float = 0.999, eps: float = 1e-8,
               value_range=(-1.0, 1.0), dtype: str = "float32",
               device: str | torch.device = "cpu", channels_last: bool = False):
    self.lambda_L1 = lambda_L1  # pylint: disable=invalid-name
    g = define_G(netG, input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout)
    d = define_D(netD, input_nc + output_nc, n_layers_D, ndf=ndf, norm=norm)
    super().__init__({"G": g}, {"D": d}, crop_size=crop_size, flip=flip, gan_mode=gan_mode,
                     lr=lr, b1=b1, b2=b2, eps=eps, value_range=value_range, dtype=dtype,
                     device=device, channels_last=channels_last)

  def step(self, batch, noise: TranslationDraws | None = None):
    x = self.inputs(batch, noise)
    a, b = x["A"], x["B"]
    d = self.discriminators["D"]
    fake = self.run("G", "fake", a, noise)
    self.opt_d.zero_grad(set_to_none=True)
    pred_fake = self.judge("D", torch.cat([a, fake.detach()], 1))
    pred_real = self.judge("D", torch.cat([a, b], 1))
    loss_d = 0.5 * (self.gan(pred_fake, False) + self.gan(pred_real, True))
    loss_d.backward()
    self.opt_d.step()
    self.opt_g.zero_grad(set_to_none=True)
    d.requires_grad_(False)
    gan_g = self.gan(self.judge("D", torch.cat([a, fake], 1)), True)
    l1 = _l1(fake, b)
    loss_g = gan_g + self.lambda_L1 * l1
    loss_g.backward()
    d.requires_grad_(True)
    self.opt_g.step()
    return {"loss_D": loss_d.detach(), "gan_G": gan_g.detach(), "l1": l1.detach(),
            "loss_g": loss_g.detach()}


class CycleGANPeer(TranslationPeer):
  """The reference's CycleGANModel.optimize_parameters: ``fake_B = G_A(A)``, ``rec_A =
  G_B(fake_B)``, ``fake_A = G_B(B)``, ``rec_B = G_A(fake_A)``; the generators take one Adam step
  (the discriminators frozen) on ``L(D_A(fake_B), 1) + L(D_B(fake_A), 1) + lambda_A |rec_A - A| +
  lambda_B |rec_B - B| + lambda_identity (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|)``; then
  each discriminator one step on ``0.5 * (L(D(real), 1) + L(D(pooled fake), 0))`` with the fakes
  made before the generators' update, through a pool of ``pool_size`` past fakes each. The
  metrics have genjax's names: ``identity_B`` is ``|G_A(B) - B|`` (the reference's ``idt_A``),
  every term unweighted but ``loss_g``."""

  paired = False

  def __init__(self, input_nc: int = 3, output_nc: int = 3, *, netG: str = "resnet_9blocks",  # pylint: disable=invalid-name
               netD: str = "basic", ngf: int = 64, ndf: int = 64, n_layers_D: int = 3,  # pylint: disable=invalid-name
               norm: str = "instance", use_dropout: bool = False, gan_mode: str = "lsgan",
               lambda_A: float = 10.0, lambda_B: float = 10.0,  # pylint: disable=invalid-name
               lambda_identity: float = 0.5, pool_size: int = 50, crop_size: int | None = 256,
               flip: bool = True, lr: float = 2e-4, b1: float = 0.5, b2: float = 0.999,
               eps: float = 1e-8, value_range=(-1.0, 1.0), dtype: str = "float32",
               device: str | torch.device = "cpu", channels_last: bool = False):
    self.lambda_A, self.lambda_B, self.lambda_identity = lambda_A, lambda_B, lambda_identity  # pylint: disable=invalid-name
    g = lambda i, o: define_G(netG, i, o, ngf=ngf, norm=norm, use_dropout=use_dropout)  # pylint: disable=unnecessary-lambda-assignment
    d = lambda c: define_D(netD, c, n_layers_D, ndf=ndf, norm=norm)  # pylint: disable=unnecessary-lambda-assignment
    super().__init__({"G_A": g(input_nc, output_nc), "G_B": g(output_nc, input_nc)},
                     {"D_A": d(output_nc), "D_B": d(input_nc)}, crop_size=crop_size, flip=flip,
                     gan_mode=gan_mode, lr=lr, b1=b1, b2=b2, eps=eps, value_range=value_range,
                     dtype=dtype, device=device, channels_last=channels_last)
    # D_A judges domain B (G_A's fakes), D_B domain A, each with its own pool.
    self.pools = {"D_A": TorchImagePool(pool_size), "D_B": TorchImagePool(pool_size)}

  def step(self, batch, noise: TranslationDraws | None = None):
    x = self.inputs(batch, noise)
    a, b = x["A"], x["B"]
    fake_b = self.run("G_A", "fake", a, noise)
    rec_a = self.run("G_B", "rec", fake_b, noise)
    fake_a = self.run("G_B", "fake", b, noise)
    rec_b = self.run("G_A", "rec", fake_a, noise)
    for d in self.discriminators.values():
      d.requires_grad_(False)
    self.opt_g.zero_grad(set_to_none=True)
    out = {}
    loss_g = torch.zeros((), device=self.device)
    if self.lambda_identity:
      out["identity_B"] = _l1(self.run("G_A", "idt", b, noise), b)
      out["identity_A"] = _l1(self.run("G_B", "idt", a, noise), a)
      loss_g = loss_g + self.lambda_identity * (self.lambda_B * out["identity_B"] +
                                                self.lambda_A * out["identity_A"])
    out["gan_G_A"] = self.gan(self.judge("D_A", fake_b), True)
    out["gan_G_B"] = self.gan(self.judge("D_B", fake_a), True)
    out["cycle_A"] = _l1(rec_a, a)
    out["cycle_B"] = _l1(rec_b, b)
    loss_g = (loss_g + out["gan_G_A"] + out["gan_G_B"] + self.lambda_A * out["cycle_A"] +
              self.lambda_B * out["cycle_B"])
    loss_g.backward()
    self.opt_g.step()
    for d in self.discriminators.values():
      d.requires_grad_(True)
    self.opt_d.zero_grad(set_to_none=True)
    for role, real, fake in (("D_A", b, fake_b), ("D_B", a, fake_a)):
      draws = noise.pool.get(role) if noise is not None and noise.pool else None
      fake = self.pools[role].query(fake.detach(), draws).contiguous(
          memory_format=self.memory_format)
      pred_real = self.judge(role, real)
      pred_fake = self.judge(role, fake.detach())
      loss_d = 0.5 * (self.gan(pred_real, True) + self.gan(pred_fake, False))
      loss_d.backward()
      out[f"loss_{role}"] = loss_d
    self.opt_d.step()
    out["loss_g"] = loss_g
    return {k: v.detach() for k, v in out.items()}


# --- weights from genjax ------------------------------------------------------------------------

def _weighted_layers(seq: nn.Sequential) -> list[nn.Module]:
  return [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))]


def _genjax_layers(body) -> list[Any]:
  """A genjax ConvEncoder/ConvDecoder's convs and norms in forward order (no Identity norms)."""
  first = [body.first] if hasattr(body, "first") else []
  mods = first + [m for block in body.blocks for m in block] + [body.out]
  return [m for m in mods if hasattr(m, "kernel") or hasattr(m, "scale")]


def _tensor(x) -> torch.Tensor:
  import numpy as np  # pylint: disable=g-import-not-at-top
  return torch.from_numpy(np.array(x[...], dtype=np.float32))


def load_genjax_body(seq: nn.Sequential, body) -> None:
  """Copies a genjax ``ConvEncoder``/``ConvDecoder``'s parameters and statistics into ``seq``."""
  ours, theirs = _weighted_layers(seq), _genjax_layers(body)
  if len(ours) != len(theirs):
    raise ValueError(f"layer count differs: {len(ours)} (torch) vs {len(theirs)} (genjax)")
  with torch.no_grad():
    for t, j in zip(ours, theirs):
      if isinstance(t, nn.BatchNorm2d):
        for dst, src in ((t.weight, j.scale), (t.bias, j.bias), (t.running_mean, j.mean),
                         (t.running_var, j.var)):
          dst.copy_(_tensor(src))
        continue
      # genjax kernels are (kh, kw, in, out); Conv2d is (out, in, kh, kw) and ConvTranspose2d
      # (in, out, kh, kw), both applied without flipping, as genjax does.
      order = (2, 3, 0, 1) if isinstance(t, nn.ConvTranspose2d) else (3, 2, 0, 1)
      t.weight.copy_(_tensor(j.kernel).permute(*order))
      if (t.bias is None) != (j.bias is None):
        raise ValueError("bias presence differs between genjax and torch layers")
      if t.bias is not None:
        t.bias.copy_(_tensor(j.bias))


def load_genjax(peer: Peer, nets: dict[str, Any]) -> None:
  """Copies genjax networks (``{role: nnx.Module}``, as ``family.build`` returns) into ``peer``."""
  if isinstance(peer, DCGANPeer):
    load_genjax_body(peer.generator, nets["generator"].body)
    load_genjax_body(peer.discriminator, nets["discriminator"].body)
  elif isinstance(peer, VAEPeer):
    load_genjax_body(peer.encoder, nets["model"].encoder)
    load_genjax_body(peer.decoder, nets["model"].decoder)
  elif isinstance(peer, TranslationPeer):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from genjax import torch_weights  # pylint: disable=g-import-not-at-top
    for role, net in peer.networks().items():
      state = torch_weights.to_torch(nets[role])  # the reference's keys and layouts
      # strict: every key of the peer's reference module tree, with its shape
      net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
  else:
    raise TypeError(f"unknown peer {type(peer).__name__}")
