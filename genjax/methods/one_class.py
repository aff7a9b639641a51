"""Deep SVDD (Ruff et al., ICML 2018): one-class anomaly detection by a minimum-volume hypersphere.

A bias-free network φ is trained on normal data only (``config.dataset.classes``) to map it
close to a fixed centre ``c``: the *one-class* objective minimises the mean of
``||φ(x) - c||^2``; the *soft-boundary* objective ``R^2 + (1/ν) mean(max(0, ||φ(x) - c||^2 -
R^2))`` also shrinks a radius ``R`` that, after ``radius_warmup_steps``, is set on every batch
to the ``(1 - ν)``-quantile of its distances (the reference's update). The anomaly score of a
test image is ``||φ(x) - c||^2``, less ``R^2`` for the soft boundary (the same ranking).

``c`` is the mean output of the initial network on the training data, in inference mode, with
entries within ``eps`` of zero pushed to ``±eps`` (:func:`genjax.losses.svdd_center`). It is
computed once when a run starts (:meth:`OneClass.prepare`), after ``config.init.from_run`` has
put in the pre-trained autoencoder's encoder, and kept with ``R`` in ``TrainState.extra``: a
resumed run continues with the same sphere. The optimiser is the reference's Adam with an L2
term (``config.optimizer.weight_decay``, :func:`genjax.methods.base.make_optimizer`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax import errors
from genjax import losses
from genjax.errors import ConfigError
from genjax.methods.base import grid_shape
from genjax.methods.base import Method
from genjax.methods.base import TrainState

OBJECTIVES = ("one-class", "soft-boundary")


class OneClass(Method):
  DEFAULTS = dict(
      objective="one-class",  # 'one-class' or 'soft-boundary'
      nu=0.1,  # soft boundary: the bound on the fraction of training points outside the sphere
      eps=0.1,  # centre entries within eps of 0 move to +-eps
      radius_warmup_steps=0,  # soft boundary: R stays 0 for these steps (the paper's 10 epochs)
  )
  SAMPLE_NET = "model"

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    errors.check_config_choice("method.objective", m.objective, OBJECTIVES)
    if not 0.0 < m.nu <= 1.0:
      raise ConfigError(f"config.method.nu must be in (0, 1], got {m.nu}")
    if m.eps < 0 or m.radius_warmup_steps < 0:
      raise ConfigError(f"config.method.eps and radius_warmup_steps must be >= 0, got "
                        f"{m.eps}, {m.radius_warmup_steps}")

  @property
  def soft_boundary(self) -> bool:
    return self.mc.objective == "soft-boundary"

  def init_extra(self):
    rep_dim = self.abstract_nets["model"].rep_dim
    return {"center": jnp.zeros((rep_dim,), jnp.float32), "radius": jnp.zeros((), jnp.float32)}

  def representation(self, state: TrainState, x: jax.Array, *, train: bool = False):
    return self._phi(state.params["model"], state.buffers["model"], x, train=train)

  def _phi(self, params, buffers, x: jax.Array, *, train: bool = False) -> jax.Array:
    return self.net("model", params, buffers, train=train)(x)

  def prepare(self, state: TrainState, examples) -> TrainState:
    """Sets the centre from the mean output of the network (in inference mode, as the
    reference's ``init_center_c``) on the training examples, in batches of ``batch_size``,
    on this process's default device (host copies of the weights: every process computes
    the same centre from the same examples, whatever devices the state spans)."""
    total_fn = jax.jit(lambda p, b, images: jnp.sum(
        self._phi(p, b, self.images(images)).astype(jnp.float32), 0))
    weights = jax.device_get((state.params["model"], state.buffers["model"]))
    images = examples["image"]
    step = self.config.batch_size
    total = sum(np.asarray(total_fn(*weights, images[i:i + step]), np.float64)
                for i in range(0, len(images), step))
    center = losses.svdd_center(total / len(images), self.mc.eps)
    return state.replace(extra={**state.extra, "center": center})

  def distances(self, state: TrainState, x: jax.Array) -> jax.Array:
    return losses.squared_distance(self.representation(state, x), state.extra["center"])

  def step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    x = self.images(batch["image"])
    center, radius = state.extra["center"], state.extra["radius"]
    buffers = state.buffers["model"]

    def loss_fn(params):
      net = self.net("model", params, buffers)
      dist = losses.squared_distance(net(x), center)
      if self.soft_boundary:
        loss = losses.svdd_soft_boundary(dist, radius, self.mc.nu)
      else:
        loss = losses.svdd_one_class(dist)
      return loss, (dist, self.buffers_of(net))

    (loss, (dist, new_buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params["model"])
    params, opt_state = self.update(state, "model", grads)
    metrics = {"loss": loss, "distance": jnp.mean(dist)}
    extra = state.extra
    if self.soft_boundary:
      # R from this batch's distances (before the update), as the reference: over the global
      # batch, so every device keeps the same R.
      every = dist if self.axis_name is None else jax.lax.all_gather(
          dist, self.axis_name, tiled=True)
      radius = jnp.where(state.step >= self.mc.radius_warmup_steps,
                         losses.svdd_radius(every, self.mc.nu), radius)
      extra = {**extra, "radius": radius}
      metrics["radius"] = radius
    return self.finish(state, {"model": params}, {"model": new_buffers}, {"model": opt_state},
                       metrics, extra)

  def anomaly_scores(self, state: TrainState, images: jax.Array) -> jax.Array:
    """``||φ(x) - c||^2``, less ``R^2`` for the soft boundary, per uint8 image."""
    dist = self.distances(state, self.images(images))
    return dist - jnp.square(state.extra["radius"]) if self.soft_boundary else dist

  def features(self, state, images):
    return self.representation(state, self.images(images)).astype(jnp.float32)

  def sample_grids(self, state, examples, rng):
    """The first training examples from the most normal (top left) to the most anomalous."""
    del rng
    images = examples["image"]
    n = images.shape[0]
    rows, cols = grid_shape(n)
    order = jnp.argsort(self.anomaly_scores(state, images))[:rows * cols]
    x = self.images(images)[order]
    return {"by_anomaly_score": x.reshape(rows, cols, *x.shape[1:])}
