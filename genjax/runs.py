"""Runs as objects: a config's method with its networks built, and a finished (or running)
run's newest checkpoint restored with the config it was written with.

It sits above the config schema and the methods and below the trainer and the command-line
tools, which all build and restore runs through it.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import kernels
from genjax import methods
from genjax import models
from genjax import parallel
from genjax.errors import CheckpointError
from genjax.metrics.features import ClassifierFeatures


def build_method(config, axis_name: str | None = None,
                 conv_backend: kernels.ConvBackend = kernels.XLA) -> methods.Method:
  """The training method of ``config``'s model family, with its networks built on
  ``conv_backend``'s kernels (the launcher's :func:`genjax.kernels.resolve` of
  ``config.conv_backend``)."""
  method_cls = methods.get(models.get(config.model.name).METHOD)
  return method_cls(config, config_lib.image_shape(config),
                    data.DATASETS[config.dataset.name].num_classes, axis_name, conv_backend)


def restore_run(workdir: str | os.PathLike, step: int | None = None, *,
                sharding: jax.sharding.Sharding | None = None,
                conv_backend: kernels.ConvBackend = kernels.XLA):
  """``(method, state, config)`` of the newest (or given) checkpoint of a genjax run.

  The model is rebuilt from the config stored with the checkpoint, its networks on
  ``conv_backend``'s kernels; the state is restored with ``sharding`` (default: replicated over
  the local devices).

  Raises:
    CheckpointError: No checkpoint, or one that does not match its own config.
  """
  workdir = os.fspath(workdir)
  directory = os.path.join(workdir, "checkpoints")
  missing = CheckpointError(f"no checkpoints in {directory}: train first with "
                            f"python -m genjax.cli.train --workdir={workdir} ...")
  if not os.path.isdir(directory):
    raise missing
  ckpt = checkpoint.Checkpointer(directory, read_only=True)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise missing
    steps = ckpt.all_steps()
    if step not in steps:
      raise CheckpointError(f"no checkpoint step {step} in {directory}; it has step"
                            f"{'s' * (len(steps) > 1)} {', '.join(map(str, steps))}")
    meta = ckpt.read_meta(step)
    if "config" not in meta:
      raise CheckpointError(f"checkpoint step {step} in {directory} holds no config")
    config = config_lib.from_json(meta["config"])
    method = build_method(config, conv_backend=conv_backend)
    if sharding is None:
      mesh = jax.sharding.Mesh(np.array(jax.local_devices()), (parallel.MESH_AXIS,))
      sharding = NamedSharding(mesh, P())
    abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0))
    state, _ = ckpt.restore(step, abstract, sharding=sharding, model=config.model.name)
  finally:
    ckpt.close()
  return method, state, config


def load_classifier(workdir: str | os.PathLike, *, batch_size: int = 500,
                    devices: list[jax.Device] | None = None,
                    conv_backend: kernels.ConvBackend = kernels.XLA) -> ClassifierFeatures:
  """The newest checkpoint of a genjax ``classifier`` run as a feature extractor (on
  ``conv_backend``'s kernels).

  Returns a callable ``images01 -> {"features": [B, F], "logits": [B, C]}`` (numpy): the
  penultimate layer for classifier-FID/KID/PRDC, the logits' softmax for classifier-IS.

  Raises:
    CheckpointError: No readable checkpoint, or a checkpoint of a model without those outputs.
  """
  method, state, config = restore_run(workdir, conv_backend=conv_backend)
  if config.model.name != "classifier":
    raise CheckpointError(f"{os.fspath(workdir)} holds a {config.model.name!r} run, not a "
                          f"'classifier'")
  return ClassifierFeatures(method, state, batch_size=batch_size, devices=devices)
