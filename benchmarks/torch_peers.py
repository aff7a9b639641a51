"""PyTorch peers of the benchmarked genjax models: the same networks and the same train step.

The networks mirror ``genjax.models.layers.ConvEncoder``/``ConvDecoder`` layer for layer (so at
64 px with nz=100, ngf=ndf=64 and 3 channels they are exactly pytorch/examples' DCGAN), and each
peer's ``step`` does the work of the corresponding genjax method on the same uint8 batch:

* :class:`DCGANPeer`: pytorch/examples' update order. The generator runs once; the discriminator
  takes one Adam step on the real batch and the detached fakes (BCE with logits, summed); then
  the generator takes one step through the updated discriminator (non-saturating loss).
* :class:`VAEPeer`: Gaussian encoder, reparameterised sample, Bernoulli decoder, loss
  ``mean(nll + beta * KL)`` and one Adam step.

Both preprocess on the device as genjax does (scale to ``value_range``, then centre-pad or
bilinearly upsample), run BatchNorm in train mode (momentum 0.1, eps 1e-5), compute in float32
or, for ``dtype="bfloat16"``, under ``torch.autocast`` with losses in float32.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

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
  else:
    raise TypeError(f"unknown peer {type(peer).__name__}")
