"""Supervised classification with softmax cross-entropy on ``batch["label"]``.

Used to train domain classifiers whose features and class probabilities score generative
models (classifier-FID/KID/IS). Optional augmentation translates every training image by up to
``translate`` pixels (filling with the background value), drawn per example on the device as
one global sample, so a step does not depend on the device count.

Generative data augmentation: with ``generated_fraction > 0`` that fraction of every batch is
replaced by images a frozen class-conditional generator (``config.frozen.generator``, an AC-GAN
or cGAN run) draws for uniformly drawn labels, the labels it was asked for being the targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import data
from genjax import parallel
from genjax.errors import ConfigError
from genjax.methods.base import FrozenSlot
from genjax.methods.base import grid_shape
from genjax.methods.base import Method
from genjax.methods.base import TrainState


class Classification(Method):
  DEFAULTS = dict(
      translate=2,  # random translation of up to this many pixels per axis (0 = off)
      label_smoothing=0.0,  # mass spread uniformly over the classes in the targets
      generated_fraction=0.0,  # share of each batch drawn by config.frozen.generator (0 = off)
  )
  KEYS = ("image", "label")
  SAMPLE_NET = "model"
  FROZEN = {"generator": FrozenSlot("a class-conditional generator for "
                                    "method.generated_fraction", families=("acgan", "cgan"))}

  @classmethod
  def required_frozen(cls, config) -> tuple[str, ...]:
    return ("generator",) if config.method.generated_fraction else ()

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    if not isinstance(m.translate, int) or m.translate < 0:
      raise ConfigError(f"config.method.translate must be an integer >= 0, got {m.translate!r}")
    if not 0.0 <= m.generated_fraction < 1.0:
      raise ConfigError(f"config.method.generated_fraction must be in [0, 1), got "
                        f"{m.generated_fraction}")
    if not 0.0 <= m.label_smoothing < 1.0:
      raise ConfigError(f"config.method.label_smoothing must be in [0, 1), got "
                        f"{m.label_smoothing}")
    classes = data.DATASETS[config.dataset.name].num_classes
    if classes < 2:
      raise ConfigError(f"dataset {config.dataset.name!r} has no class labels to learn")
    if "eval" in config and config.eval.get("every"):
      raise ConfigError("a classifier generates nothing to evaluate: leave config.eval.every=0 "
                        "(its accuracy: genjax.methods.classification.accuracy)")
    if config.model.num_classes != classes:
      raise ConfigError(f"config.model.num_classes={config.model.num_classes} but "
                        f"{config.dataset.name} has {classes} classes; set "
                        f"--config.model.num_classes={classes}")

  def augment(self, x: jax.Array, rng: jax.Array) -> jax.Array:
    """Each image shifted by an independent integer offset in [-translate, translate]^2."""
    t = self.mc.translate
    if not t:
      return x
    shifts = parallel.batch_random(
        lambda key, shape: jax.random.randint(key, shape, 0, 2 * t + 1), rng, (x.shape[0], 2),
        self.axis_name)
    padded = jnp.pad(x, ((0, 0), (t, t), (t, t), (0, 0)), constant_values=self.value_range[0])

    def crop(image, shift):
      return jax.lax.dynamic_slice(image, (shift[0], shift[1], 0), x.shape[1:])
    return jax.vmap(crop)(padded, shifts)

  def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy against (smoothed) one-hot labels."""
    targets = jax.nn.one_hot(labels, self.num_classes)
    if self.mc.label_smoothing:
      targets = optax.smooth_labels(targets, self.mc.label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def check_frozen(self, networks) -> None:
    if "generator" in networks:
      drawn = networks["generator"].method.cond_classes
      if drawn != self.num_classes:
        raise ConfigError(f"config.frozen.generator draws {drawn} classes, this classifier has "
                          f"{self.num_classes}")

  def generated(self, frozen, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` images (in this run's value range) the frozen generator draws for uniformly drawn
    labels, and those labels."""
    source = self.frozen["generator"].method
    latent = source.sample_latent(key, n, self.axis_name)
    images = source.generate(self.frozen_net("generator", frozen), latent).astype(jnp.float32)
    (slo, shi), (lo, hi) = source.value_range, self.value_range
    images = (jnp.clip(images, slo, shi) - slo) / (shi - slo) * (hi - lo) + lo
    return images, latent["labels"]

  def step(self, state: TrainState, batch, frozen=None) -> tuple[TrainState, dict]:
    """One update; ``frozen``: the generator's weights where ``generated_fraction`` is set."""
    aug_key, dropout_key, gen_key = jax.random.split(self.step_key(state), 3)
    x, labels = self.images(batch["image"]), batch["label"]
    n_gen = round(self.mc.generated_fraction * x.shape[0])
    if n_gen:  # the batch's last n_gen examples are the generator's
      fake, fake_labels = self.generated(frozen, gen_key, n_gen)
      x = jnp.concatenate([x[:x.shape[0] - n_gen], fake.astype(x.dtype)])
      labels = jnp.concatenate([labels[:labels.shape[0] - n_gen],
                                fake_labels.astype(labels.dtype)])
    x = self.augment(x, aug_key)
    buffers = state.buffers["model"]

    def loss_fn(params):
      model = self.net("model", params, buffers)
      logits = model(x, dropout_key)["logits"]
      loss = jnp.mean(self.loss(logits, labels))
      accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
      return loss, ({"loss": loss, "accuracy": accuracy}, self.buffers_of(model))

    grads, (metrics, new_buffers) = jax.grad(loss_fn, has_aux=True)(state.params["model"])
    params, opt_state = self.update(state, "model", grads)
    return self.finish(state, {"model": params}, {"model": new_buffers}, {"model": opt_state},
                       metrics)

  def sample_grids(self, state, examples, rng, frozen=None):
    """Nothing is generated: the grid shows the (augmented) inputs the classifier sees."""
    del state, frozen
    images = examples["image"]
    n = images.shape[0]
    rows, cols = grid_shape(n)
    x = self.augment(self.images(images[:rows * cols]), rng)
    return {"inputs": x.reshape(rows, cols, *x.shape[1:])}


def accuracy(method: Classification, state: TrainState, images: np.ndarray,
             labels: np.ndarray, batch_size: int = 1000) -> float:
  """Fraction of ``images`` (uint8 NHWC, as ``data.load`` gives) classified as ``labels``.

  The network runs in inference mode (running BatchNorm statistics, EMA weights where kept, no
  dropout, no augmentation), jitted, with each batch split over the local devices.
  """
  role = method.SAMPLE_NET
  tree = (state.ema.get(role, state.params[role]), state.buffers[role])

  def predict(tree, images_uint8):
    logits = method.net(role, *tree, train=False)(method.images(images_uint8))["logits"]
    return jnp.argmax(logits, -1)

  predictions = parallel.BatchedApply(predict, tree, batch_size=batch_size)(images)
  return float(np.mean(predictions == np.asarray(labels)))
