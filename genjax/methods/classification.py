"""Supervised classification with softmax cross-entropy on ``batch["label"]``.

Used to train domain classifiers whose features and class probabilities score generative
models (classifier-FID/KID/IS). Optional augmentation translates every training image by up to
``translate`` pixels (filling with the background value), drawn per example on the device as
one global sample, so a step does not depend on the device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax import data
from genjax import parallel
from genjax.errors import ConfigError
from genjax.methods.base import grid_shape
from genjax.methods.base import Method
from genjax.methods.base import TrainState


class Classification(Method):
  DEFAULTS = dict(
      translate=2,  # random translation of up to this many pixels per axis (0 = off)
      label_smoothing=0.0,  # mass spread uniformly over the classes in the targets
  )
  KEYS = ("image", "label")
  SAMPLE_NET = "model"

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    if not isinstance(m.translate, int) or m.translate < 0:
      raise ConfigError(f"config.method.translate must be an integer >= 0, got {m.translate!r}")
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

  def step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    aug_key, dropout_key = jax.random.split(self.step_key(state))
    x = self.augment(self.images(batch["image"]), aug_key)
    labels = batch["label"]
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

  def sample_grids(self, state, examples, rng):
    """Nothing is generated: the grid shows the (augmented) inputs the classifier sees."""
    del state
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
