"""The benchmarked workloads: a genjax config, its compiled train step, and its PyTorch peer.

A workload is an experiment config run on synthetic uint8 batches of the dataset's native size
(preprocessing happens inside both steps): ``image``/``label`` for the image models, ``A``/``B``
at ``load_size`` for image-to-image translation (an image folder as loaded, resized on the host;
the random crop and flip are in the step). ``tiny=True`` shrinks the networks for dry runs and
tests while keeping every code path.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import jax
import numpy as np

from genjax import config as config_lib
from genjax import data
from genjax import kernels
from genjax import methods
from genjax import parallel
from genjax import runs


@dataclasses.dataclass(frozen=True)
class Workload:
  """A named benchmark model.

  Attributes:
    name: CLI name.
    config: Module under ``experiments.configs`` whose ``get_config()`` is the starting point.
    dataset: Dataset whose native image shape the uint8 batches have.
    image_size: Size the models see (``dataset.image_size``; 0: the dataset's own, e.g. an image
      folder's ``crop_size``).
    resize: How the step reaches it (``dataset.resize``).
    batch: Default global batch.
    description: One line for the reports.
    tiny: Config overrides of the dry-run variant.
  """
  name: str
  config: str
  dataset: str
  image_size: int
  resize: str
  batch: int
  description: str
  tiny: dict[str, Any]


_TINY_DCGAN = {"model.ngf": 8, "model.ndf": 8, "model.latent_dim": 16}
# Narrow networks on small crops (the reference's 286 -> 256, scaled down); Pix2Pix's unet_64 is
# the smallest U-Net with a dropout level.
_TINY_PIX2PIX = {"model.netG": "unet_64", "model.ngf": 8, "model.ndf": 8,
                 "dataset.load_size": 72, "dataset.crop_size": 64}
_TINY_CYCLEGAN = {"model.netG": "resnet_2blocks", "model.ngf": 8, "model.ndf": 8,
                  "dataset.load_size": 36, "dataset.crop_size": 32}

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("dcgan64", "dcgan_64", "synthetic_rgb", 64, "resize", 64,
             "pytorch/examples DCGAN, 64 px, 3 channels (32 px uint8 upsampled in the step)",
             _TINY_DCGAN),
    Workload("dcgan32", "dcgan_fashion_mnist", "synthetic", 32, "pad", 64,
             "DCGAN, 32 px, 1 channel (28 px uint8 padded in the step)", _TINY_DCGAN),
    Workload("vae", "vae_fashion_mnist", "synthetic", 32, "pad", 128,
             "conv VAE, 32 px, 1 channel, Bernoulli decoder, 16-d latent", {"model.width": 8,
                                                                           "model.latent_dim": 8}),
    Workload("pix2pix256", "pix2pix_facades", "image_folder", 0, "pad", 1,
             "Pix2Pix (reference defaults): unet_256 + PatchGAN, BatchNorm, dropout, 256 px "
             "(286 px uint8 A/B pairs cropped and flipped in the step)",
             _TINY_PIX2PIX),
    Workload("cyclegan256", "cyclegan_horse2zebra", "image_folder", 0, "pad", 1,
             "CycleGAN (reference defaults): 2x resnet_9blocks + 2x PatchGAN, InstanceNorm, "
             "pools of 50, 256 px (286 px uint8 A and B cropped and flipped in the step)",
             _TINY_CYCLEGAN),
)}

# A path for image_folder configs, which need one: the benchmarks never read it (the batches
# are synthetic).
SYNTHETIC_FOLDER = "/nonexistent/synthetic-batches"


def get(name: str) -> Workload:
  if name not in WORKLOADS:
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(WORKLOADS)}")
  return WORKLOADS[name]


def make_config(workload: Workload, batch: int, dtype: str, *, tiny: bool = False,
                conv_backend: str = "auto"):
  """The genjax config of ``workload`` at ``batch``, compute ``dtype`` and ``conv_backend``,
  validated."""
  c = importlib.import_module(f"experiments.configs.{workload.config}").get_config()
  c.unlock()
  c.dataset.name = workload.dataset
  c.dataset.image_size = workload.image_size
  c.dataset.resize = workload.resize
  c.batch_size = batch
  c.dtype = dtype
  c.conv_backend = conv_backend
  c.compilation_cache_dir = ""
  if data.DATASETS[workload.dataset].source == "folder":
    c.dataset.path = SYNTHETIC_FOLDER
  if tiny:
    for key, value in workload.tiny.items():
      section, field = key.split(".")
      c[section][field] = value
  c.lock()
  config_lib.validate(c)
  return c


def make_batch(config, seed: int = 0) -> dict[str, np.ndarray]:
  """A random uint8 NHWC batch at the dataset's native size: ``image`` with zero labels, or
  image-to-image ``A`` and ``B`` (an image folder's at ``load_size``, as it is loaded)."""
  ds = config.dataset
  info = data.DATASETS[ds.name]
  rng = np.random.default_rng(seed)
  b = config.batch_size
  if info.target == "image":
    h, w, ch = info.shape
    return {"image": rng.integers(0, 256, (b, h, w, ch), dtype=np.uint8),
            "label": np.zeros(b, np.int32)}
  if info.source == "folder":
    shapes = {k: (ds.load_size, ds.load_size, c) for k, c in zip(("A", "B"), ds.channels)}
  else:
    shapes = {**dict(info.sources), info.target: info.shape}
  return {k: rng.integers(0, 256, (b, *shape), dtype=np.uint8)
          for k, shape in sorted(shapes.items())}


@dataclasses.dataclass
class GenjaxSetup:
  """What it takes to run genjax's step: ``state, metrics = step(state, batch)``."""
  method: methods.Method
  strategy: parallel.Strategy
  state: Any
  batch: Any
  step: Any  # jitted, donating the state


def build_genjax(config, host_batch: dict[str, np.ndarray], seed: int = 0) -> GenjaxSetup:
  """Builds the method, its initial state and the jitted step (not yet compiled)."""
  strategy = parallel.make_strategy(config.parallel)
  strategy.check_batch(config.batch_size)
  conv_backend = kernels.resolve(config.conv_backend, mesh=strategy.data_mesh, dtype=config.dtype)
  method = runs.build_method(config, strategy.axis_name, conv_backend)
  state = jax.jit(method.init, out_shardings=strategy.state_sharding())(
      jax.random.PRNGKey(seed))
  return GenjaxSetup(method=method, strategy=strategy, state=strategy.put_state(state),
                     batch=strategy.put_batch(host_batch), step=strategy.compile(method.step))


def networks(setup: GenjaxSetup) -> dict[str, Any]:
  """The genjax networks of the current state, by role (train mode)."""
  s = setup.strategy.get_state(setup.state)
  return {role: setup.method.net(role, s.params[role], s.buffers[role])
          for role in setup.method.graphdefs}


def _require(ok: bool, what: str) -> None:
  if not ok:
    raise ValueError(f"the PyTorch peer does not implement {what}")


# 'hold_linear' (Pix2Pix, CycleGAN) holds the rate for its first hold_steps steps: the peer's
# constant rate is the same over a benchmark's steps, which are far fewer.
_HOLD_STEPS_MIN = 1000


def build_peer(config, dtype: str, device: str = "cpu", *, channels_last: bool = False):
  """The PyTorch peer of ``config``'s model and step (random init; see ``load_genjax``)."""
  from benchmarks import torch_peers  # pylint: disable=g-import-not-at-top
  opt, ds, m = config.optimizer, config.dataset, config.model
  constant = opt.schedule == "constant" or (opt.schedule == "hold_linear" and
                                            opt.hold_steps >= _HOLD_STEPS_MIN)
  _require(opt.name == "adam" and constant and not opt.warmup_steps and
           not opt.grad_clip_norm, f"optimizer {opt.name}/{opt.schedule}")
  _require(config.ema_decay == 0, "EMA")
  if m.name in ("pix2pix", "cyclegan"):
    return _translation_peer(config, dtype, device, channels_last)
  _require(m.norm == "batch", f"norm={m.norm}")
  size, _, channels = config_lib.image_shape(config)
  common = dict(lr=opt.learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                value_range=tuple(ds.value_range), resize=ds.resize, dtype=dtype, device=device,
                channels_last=channels_last)
  if m.name == "dcgan":
    mc = config.method
    _require(mc.loss == "non_saturating" and not mc.d_learning_rate, f"loss {mc.loss}")
    return torch_peers.DCGANPeer(size, channels, m.latent_dim, m.ngf, m.ndf, **common)
  if m.name == "vae":
    mc = config.method
    _require(mc.likelihood == "bernoulli" and not mc.binarize and mc.corruption == "none",
             "this VAE likelihood or corruption")
    return torch_peers.VAEPeer(size, channels, m.latent_dim, m.width, beta=mc.beta, **common)
  raise ValueError(f"no PyTorch peer for model {m.name!r}")


def _translation_peer(config, dtype: str, device: str, channels_last: bool):
  """Pix2PixPeer / CycleGANPeer: the reference's update, which genjax's translation method
  follows with the reference's settings (checked here)."""
  from benchmarks import torch_peers  # pylint: disable=g-import-not-at-top
  opt, ds, m, mc = config.optimizer, config.dataset, config.model, config.method
  _require(mc.gan_weight == 1.0 and mc.d_loss_scale == 0.5 and not mc.d_learning_rate and
           mc.penalty == "none" and not mc.clip_value and not mc.diffaugment,
           "gan_weight/d_loss_scale/d_learning_rate/penalty/clipping/DiffAugment other than the "
           "reference's")
  a, b = ds.channels
  common = dict(netG=m.netG, netD=m.netD, ngf=m.ngf, ndf=m.ndf, n_layers_D=m.n_layers_D,
                norm=m.norm, use_dropout=m.use_dropout, gan_mode=mc.gan_mode,
                crop_size=ds.crop_size if "crop" in ds.preprocess else None, flip=ds.flip,
                lr=opt.learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps,
                value_range=tuple(ds.value_range), dtype=dtype, device=device,
                channels_last=channels_last)
  if m.name == "pix2pix":
    # The reference pools (A, fake B) pairs where genjax pools the fakes alone: Pix2Pix runs
    # without a pool (its default) here.
    _require(mc.update_order == "d_first" and mc.pool_size == 0 and data.paired(ds),
             "Pix2Pix other than D first, without a pool, on pairs")
    return torch_peers.Pix2PixPeer(a, b, lambda_L1=mc.lambda_L1, **common)
  _require(mc.update_order == "g_first" and not mc.lambda_L1, "CycleGAN other than G first")
  return torch_peers.CycleGANPeer(a, b, lambda_A=mc.lambda_A, lambda_B=mc.lambda_B,
                                  lambda_identity=mc.lambda_identity, pool_size=mc.pool_size,
                                  **common)


def peer_batch(host_batch: dict[str, np.ndarray]):
  """The batch as the peers take it: the images as a uint8 NCHW tensor, or ``A`` and ``B`` as
  a :class:`benchmarks.torch_peers.Batch` of them."""
  import torch  # pylint: disable=g-import-not-at-top
  nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # pylint: disable=unnecessary-lambda-assignment
  if "image" in host_batch:
    return nchw(host_batch["image"])
  from benchmarks import torch_peers  # pylint: disable=g-import-not-at-top
  return torch_peers.Batch({k: nchw(host_batch[k]) for k in ("A", "B")})
