"""The benchmarked workloads: a genjax config, its compiled train step, and its PyTorch peer.

A workload is an experiment config run on synthetic uint8 batches of the dataset's native size
(preprocessing happens inside both steps). ``tiny=True`` shrinks the networks for dry runs and
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
from genjax import train


@dataclasses.dataclass(frozen=True)
class Workload:
  """A named benchmark model.

  Attributes:
    name: CLI name.
    config: Module under ``experiments.configs`` whose ``get_config()`` is the starting point.
    dataset: Dataset whose native image shape the uint8 batches have.
    image_size: Size the models see (``dataset.image_size``).
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

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("dcgan64", "dcgan_64", "synthetic_rgb", 64, "resize", 64,
             "pytorch/examples DCGAN, 64 px, 3 channels (32 px uint8 upsampled in the step)",
             _TINY_DCGAN),
    Workload("dcgan32", "dcgan_fashion_mnist", "synthetic", 32, "pad", 64,
             "DCGAN, 32 px, 1 channel (28 px uint8 padded in the step)", _TINY_DCGAN),
    Workload("vae", "vae_fashion_mnist", "synthetic", 32, "pad", 128,
             "conv VAE, 32 px, 1 channel, Bernoulli decoder, 16-d latent", {"model.width": 8,
                                                                           "model.latent_dim": 8}),
)}


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
  if tiny:
    for key, value in workload.tiny.items():
      section, field = key.split(".")
      c[section][field] = value
  c.lock()
  config_lib.validate(c)
  return c


def make_batch(config, seed: int = 0) -> dict[str, np.ndarray]:
  """A random uint8 NHWC batch at the dataset's native size, with zero labels."""
  h, w, ch = data.DATASETS[config.dataset.name].shape
  rng = np.random.default_rng(seed)
  b = config.batch_size
  return {"image": rng.integers(0, 256, (b, h, w, ch), dtype=np.uint8),
          "label": np.zeros(b, np.int32)}


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
  kernels.set_conv_backend(config.conv_backend, mesh=strategy.data_mesh, dtype=config.dtype)
  method = train.build_method(config, strategy.axis_name)
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


def build_peer(config, dtype: str, device: str = "cpu", *, channels_last: bool = False):
  """The PyTorch peer of ``config``'s model and step (random DCGAN init; see ``load_genjax``)."""
  from benchmarks import torch_peers  # pylint: disable=g-import-not-at-top
  opt, ds, m = config.optimizer, config.dataset, config.model
  _require(opt.name == "adam" and opt.schedule == "constant" and not opt.warmup_steps and
           not opt.grad_clip_norm, f"optimizer {opt.name}/{opt.schedule}")
  _require(config.ema_decay == 0, "EMA")
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


def peer_batch(host_batch: dict[str, np.ndarray]):
  """The batch's images as the uint8 NCHW tensor the peers take."""
  import torch  # pylint: disable=g-import-not-at-top
  return torch.from_numpy(np.ascontiguousarray(host_batch["image"].transpose(0, 3, 1, 2)))
