"""The configuration schema: defaults for every knob, and start-up validation.

An experiment config (``experiments/configs/<family>_<dataset>.py``) starts from
``base_config(family)``, which holds every valid key with its default (the family's model
arguments in ``config.model`` and its training method's options in ``config.method``), and
changes what it needs. The result is locked, so a misspelt key fails at once; :func:`validate`
then checks names and values and raises a one-line :class:`ConfigError` that says how to fix it.
"""

from __future__ import annotations

import os
import json
from typing import Any

import ml_collections

from genjax import data
from genjax import errors
from genjax import kernels
from genjax import methods
from genjax import models
from genjax import parallel
from genjax import profiling
from genjax.metrics import options as eval_options
from genjax.errors import ConfigError

DTYPES = ("float32", "bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "linear", "hold_linear", "step", "burda")


def base_config(family: str) -> ml_collections.ConfigDict:
  """All keys with their defaults for model family ``family``; locked against new keys."""
  module = models.get(family)
  c = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({"name": family, **models.defaults(family)})
  c.method = ml_collections.ConfigDict(methods.get(module.METHOD).DEFAULTS)
  # Frozen networks, one key per slot its method accepts (Method.FROZEN), "" = none: a genjax
  # run RUN[@STEP][#ROLE], a genjax.cli.export .npz or a reference .pth (genjax.frozen), loaded
  # and checked at start-up, never optimised and never saved in this run's checkpoints.
  c.frozen = ml_collections.ConfigDict({slot: "" for slot in methods.get(module.METHOD).FROZEN})

  c.dataset = ml_collections.ConfigDict(dict(
      name="fashion_mnist",
      split="train",
      local_dir="",  # IDX directory for mnist/fashion_mnist ("" = env var / defaults)
      data_dir="",  # TFDS data_dir ("" = TFDS default)
      download=True,  # let TFDS download missing data where a network exists
      image_size=0,  # 0 keeps the native size; e.g. 32 pads 28->32 or resizes
      resize="pad",  # how to reach image_size: 'pad' (centred) or 'resize' (bilinear)
      value_range=(-1.0, 1.0),
      # Image-to-image datasets (A -> B), with the reference's (pytorch-CycleGAN-and-pix2pix)
      # names and defaults where users know them:
      path="",  # image_folder: the root holding train/ val/ test/ or trainA/ trainB/ ...
      layout="aligned",  # image_folder: 'aligned' (AB side by side) or 'unaligned' (A/ and B/)
      direction="AtoB",  # 'AtoB' or 'BtoA': which side is the model's input
      channels=(3, 3),  # image_folder: channels of the model's input and output (RGB or 1: L)
      preprocess="none",  # image_folder resizing on the host: resize_and_crop, crop,
                          # scale_width, scale_width_and_crop or none
      load_size=286,  # image_folder: the size images are resized to ('resize'/'scale_width')
      crop_size=256,  # the random crop, on device, where preprocess crops
      flip=False,  # random horizontal flips, on device (pairs flip together)
      # The labels of the training examples (one-class anomaly detection: the normal classes,
      # e.g. --config.dataset.classes='(3,)'); () = all. Evaluation splits stay whole.
      classes=(),
      # Few-label training: this many training examples of every class (0 = all of them), the
      # same ones for the same subset_seed (e.g. 10 per class: 100 labelled MNIST digits).
      per_class=0,
      subset_seed=0,
      # Image normalisation after value scaling: 'none', or 'gcn_l1' (Deep SVDD's): global
      # contrast normalisation (l1), then min-max scaling that sends the extremes of the
      # training examples (of config.dataset.classes) to value_range.
      normalize="none",
  ))
  # Initial weights from another run, RUN[@STEP][#ROLE] (genjax.frozen.warm_start): its
  # network's parameters and buffers are copied, by name, into this run's network of the same
  # role (default: the sampling networks), e.g. Deep SVDD's encoder from its pre-training
  # autoencoder; read once when a run starts, never on resume.
  c.init = ml_collections.ConfigDict(dict(from_run=""))
  c.seed = 0
  c.batch_size = 64  # global batch, over all devices and processes
  c.num_steps = 1000
  c.parallel = "mesh"  # 'mesh' (jit + NamedSharding) or 'pmap'
  c.dtype = "float32"  # compute dtype; parameters and optimizer states stay float32

  c.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=2e-4, b1=0.5, b2=0.999, eps=1e-8, weight_decay=0.0,
      # 'hold_linear': constant until hold_steps, then linearly to 0 at num_steps (pix2pix and
      # CycleGAN's n_epochs then n_epochs_decay, per step instead of per epoch); 'step': 10x
      # lower from hold_steps on (torch's MultiStepLR, e.g. Deep SVDD's lr_milestone); 'burda':
      # Burda et al.'s IWAE schedule, stage i = 0..7 of 3^i * hold_steps steps at
      # learning_rate * 10^(-i/7), then constant (hold_steps = one pass over the data).
      # weight_decay: decoupled for 'adamw', an L2 term in the gradient for 'adam' (as
      # torch.optim.Adam's weight_decay).
      schedule="constant", warmup_steps=0, hold_steps=0, grad_clip_norm=0.0))
  c.ema_decay = 0.0  # EMA of the sampling network's params (0 = off); used for samples

  c.eval = ml_collections.ConfigDict(eval_options.defaults())  # sample-quality metrics
  c.profile = ml_collections.ConfigDict(profiling.defaults())  # jax.profiler trace, HLO dump
  c.max_steps_in_flight = -1  # bound on queued steps: -1 auto (1 for multi-process CPU), 0 none
  c.log_every = 50  # console line + TensorBoard scalars (the only host syncs)
  c.sample_every = 500  # PNG + TensorBoard sample grids
  c.num_samples = 64
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  # Resuming from a workdir whose newest checkpoint is unreadable (truncated or missing files)
  # fails, naming it; True moves each unreadable one aside to <step>.corrupt and resumes from
  # the newest readable one, logging the skipped steps.
  c.resume_skip_corrupt = False
  c.compilation_cache_dir = "~/.cache/genjax/xla"  # persistent XLA cache ('' = off)
  # Convolution kernels (genjax.kernels): 'onednn' (CPU: oneDNN through XLA's FFI), 'xla', or
  # 'auto' = 'onednn' where it builds on a CPU backend, else 'xla'. Same function either way.
  c.conv_backend = "auto"
  # glibc keeps freed memory in the process instead of page-faulting each step's buffers back
  # in (genjax.host; applied by genjax.cli.train before JAX starts).
  c.tune_malloc = True
  c.lock()
  return c


def from_json(text: str) -> ml_collections.ConfigDict:
  """The config a checkpoint was written with (``meta["config"]``), on today's schema: keys added
  since keep their defaults, keys since removed are dropped."""
  saved = json.loads(text)
  c = base_config(saved["model"]["name"])

  def merge(node, values):
    for key, value in values.items():
      if key not in node:
        continue
      if isinstance(node[key], ml_collections.ConfigDict):
        merge(node[key], value)
      else:
        node[key] = tuple(value) if isinstance(node[key], tuple) else value
  merge(c, saved)
  return c


def _fail(msg: str):
  raise ConfigError(msg)


def _check_keys(section: str, given: dict[str, Any], valid: dict[str, Any]) -> None:
  for key, value in given.items():
    if key not in valid:
      _fail(f"unknown key config.{section}.{key}; valid keys: "
            f"{', '.join(sorted(valid)) or 'none'}")
    default = valid[key]
    if default is not None and not isinstance(value, type(default)) and not (
        isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)):
      _fail(f"config.{section}.{key} must be of type {type(default).__name__}, got "
            f"{value!r} ({type(value).__name__})")


def _positive_int(config, key: str, minimum: int = 1, section: str = "") -> None:
  value = config[key]
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    _fail(f"config.{section}{key} must be an integer >= {minimum}, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ConfigError for the first problem found in ``config``."""
  name = config.model.get("name", "")
  models.get(name)  # unknown family -> lists the valid names
  model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
  model_defaults = models.defaults(name)
  _check_keys("model", model_kwargs, model_defaults)
  for key, value in model_kwargs.items():  # a width or a count: never negative
    if isinstance(model_defaults[key], int) and not isinstance(value, bool):
      _positive_int(config.model, key, 1 if key in models.SIZES else 0, section="model.")
  method = methods.get(models.get(name).METHOD)
  _check_keys("method", dict(config.method), method.DEFAULTS)
  _check_keys("frozen", dict(config.get("frozen", {})), {slot: "" for slot in method.FROZEN})
  for slot in method.required_frozen(config):
    if not config.frozen[slot]:
      pth = " or NAME.pth" if method.FROZEN[slot].build else ""
      _fail(f"this config needs {method.FROZEN[slot].what}: set --config.frozen.{slot}=RUN "
            f"(a genjax run's workdir, RUN@STEP, NAME.npz{pth})")
  keys = data.DATASETS[config.dataset.name].keys if config.dataset.name in data.DATASETS else ()
  if keys and not set(method.KEYS) <= set(keys):
    _fail(f"model {name!r} trains on examples with {', '.join(method.KEYS)}, and dataset "
          f"{config.dataset.name!r} has {', '.join(keys)}: choose a dataset with them")

  ds = config.dataset
  errors.check_choice("dataset", ds.name, data.DATASETS, ConfigError, listing="valid names")
  errors.check_config_choice("dataset.split", ds.split, data.SPLITS)
  errors.check_config_choice("dataset.resize", ds.resize, data.RESIZE_MODES)
  if not isinstance(ds.image_size, int) or ds.image_size < 0:
    _fail(f"config.dataset.image_size must be 0 (native) or a positive size, got "
          f"{ds.image_size!r}")
  errors.check_config_choice("dataset.layout", ds.layout, data.LAYOUTS)
  errors.check_config_choice("dataset.direction", ds.direction, ("AtoB", "BtoA"))
  errors.check_config_choice("dataset.preprocess", ds.preprocess, data.PREPROCESS)
  errors.check_config_choice("dataset.normalize", ds.normalize, data.NORMALIZATIONS)
  if ds.normalize != "none" and (ds.image_size or "label" not in data.DATASETS[ds.name].keys):
    _fail(f"config.dataset.normalize={ds.normalize!r} normalises an image dataset's images at "
          f"their native size: set --config.dataset.image_size=0")
  for key in ("load_size", "crop_size"):
    _positive_int(ds, key, section="dataset.")
  if "crop" in ds.preprocess and ds.preprocess != "crop" and ds.crop_size > ds.load_size:
    _fail(f"config.dataset.crop_size={ds.crop_size} exceeds load_size={ds.load_size}: the "
          f"random crop must fit in the resized image")
  if len(ds.channels) != 2 or any(c not in (1, 3) for c in ds.channels):
    _fail(f"config.dataset.channels must be (input, output) channels, each 1 or 3, got "
          f"{tuple(ds.channels)}")
  if data.DATASETS[ds.name].source == "folder" and not ds.path:
    _fail("dataset 'image_folder' needs its root folder: set --config.dataset.path=DIR")
  native = data.DATASETS[ds.name].shape[0]
  if ds.resize == "pad" and 0 < ds.image_size < native:
    _fail(f"cannot pad {ds.name} ({native}px) to image_size={ds.image_size}; use "
          f"--config.dataset.resize=resize or a size >= {native}")
  classes = tuple(ds.classes)
  if classes:
    num_classes = data.DATASETS[ds.name].num_classes
    if "label" not in data.DATASETS[ds.name].keys or num_classes < 2:
      _fail(f"config.dataset.classes selects classes by label, and dataset {ds.name!r} has no "
            f"labels: set --config.dataset.classes='()' or choose a labelled dataset")
    bad = [k for k in classes if not isinstance(k, int) or isinstance(k, bool) or
           not 0 <= k < num_classes]
    if bad:
      _fail(f"config.dataset.classes must be labels in [0, {num_classes}) of {ds.name!r}, got "
            f"{bad[0]!r} in {classes}")
  if not isinstance(ds.per_class, int) or ds.per_class < 0:
    _fail(f"config.dataset.per_class must be an integer >= 0, got {ds.per_class!r}")
  if ds.per_class and ("label" not in data.DATASETS[ds.name].keys or
                       data.DATASETS[ds.name].num_classes < 2):
    _fail(f"config.dataset.per_class takes examples of every class, and dataset {ds.name!r} has "
          f"no labels: set --config.dataset.per_class=0")
  vr = tuple(ds.value_range)
  if len(vr) != 2 or not vr[0] < vr[1]:
    _fail(f"config.dataset.value_range must be (lo, hi) with lo < hi, got {vr}")

  for key in ("batch_size", "num_steps", "log_every", "sample_every", "checkpoint_every",
              "keep_checkpoints", "num_samples"):
    _positive_int(config, key)
  _positive_int(config, "seed", minimum=0)
  _positive_int(config, "max_steps_in_flight", minimum=-1)
  for key in ("async_checkpoints", "resume_skip_corrupt"):
    if not isinstance(config[key], bool):
      _fail(f"config.{key} must be True or False, got {config[key]!r}")
  errors.check_config_choice("parallel", config.parallel, parallel.STRATEGIES)
  errors.check_config_choice("dtype", config.dtype, DTYPES)
  errors.check_config_choice("conv_backend", config.conv_backend, kernels.BACKENDS)
  if not 0.0 <= config.ema_decay < 1.0:
    _fail(f"config.ema_decay must be in [0, 1) (0 disables EMA), got {config.ema_decay}")

  opt = config.optimizer
  errors.check_config_choice("optimizer.name", opt.name, OPTIMIZERS)
  errors.check_config_choice("optimizer.schedule", opt.schedule, SCHEDULES)
  if not opt.learning_rate > 0:
    _fail(f"config.optimizer.learning_rate must be > 0, got {opt.learning_rate}")
  if not (0 <= opt.b1 < 1 and 0 <= opt.b2 < 1):
    _fail(f"config.optimizer.b1 and b2 must be in [0, 1), got {opt.b1}, {opt.b2}")
  if opt.warmup_steps < 0 or (opt.warmup_steps and opt.warmup_steps >= config.num_steps):
    _fail(f"config.optimizer.warmup_steps must be in [0, num_steps), got {opt.warmup_steps}")
  if opt.schedule in ("hold_linear", "step") and not (
      opt.warmup_steps <= opt.hold_steps < config.num_steps):
    _fail(f"config.optimizer.hold_steps must be in [warmup_steps, num_steps) for the "
          f"{opt.schedule!r} schedule, got {opt.hold_steps} (num_steps {config.num_steps})")
  if opt.schedule == "burda" and (opt.warmup_steps or opt.hold_steps < 1):
    _fail(f"config.optimizer.hold_steps is the first stage (one pass) of the 'burda' schedule "
          f"and must be >= 1, with no warm-up; got hold_steps={opt.hold_steps}, "
          f"warmup_steps={opt.warmup_steps}")
  if not opt.eps > 0 or opt.grad_clip_norm < 0:
    _fail(f"config.optimizer.eps must be > 0 and grad_clip_norm >= 0 (0: no clipping), got "
          f"{opt.eps}, {opt.grad_clip_norm}")
  if opt.weight_decay < 0 or (opt.weight_decay and opt.name not in ("adam", "adamw")):
    _fail(f"config.optimizer.weight_decay must be >= 0, and is used by 'adam' and 'adamw' "
          f"only, got {opt.weight_decay} with {opt.name!r}")
  method.validate(config)
  eval_options.validate(config)
  if ("auroc" in eval_options.parse_metrics(config.eval.metrics) and
      method.anomaly_scores is methods.Method.anomaly_scores):
    _fail(f"config.eval.metrics=auroc needs anomaly scores, and model {name!r} "
          f"({method.__name__}) gives none: use a one-class or autoencoding model")
  if ("nll" in eval_options.parse_metrics(config.eval.metrics) and
      method.log_likelihood is methods.Method.log_likelihood):
    _fail(f"config.eval.metrics=nll needs a likelihood, and model {name!r} "
          f"({method.__name__}) has none: use a VAE")
  profiling.validate(config)


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The (H, W, C) of the images models generate, after padding/resizing or cropping."""
  ds = config.dataset
  return data.image_shapes(ds)[data.DATASETS[ds.name].target]


def compilation_cache_dir(config) -> str | None:
  path = config.compilation_cache_dir
  return os.path.expanduser(path) if path else None

