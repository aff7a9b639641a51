"""Adversarial training: the one method behind every noise-to-image GAN family in genjax.

One update, as in pytorch/examples' DCGAN: the generator runs once on fresh latents; the
discriminator takes one step on the real batch and the (detached) fakes; the generator then takes
one step through the updated discriminator, reusing the first forward pass via its VJP.

What varies between the GAN papers is configuration and the networks' contract, not code paths
of their own. The discriminator's side (the loss pair, DiffAugment, penalties, clipping,
``n_critic``) is :class:`genjax.methods.gan_parts.Critic`:

* ``config.method.loss`` picks the pair of objectives in ``losses.GAN_LOSSES`` (minimax,
  non-saturating, least squares, Wasserstein, hinge); ``penalty`` a discriminator penalty in
  ``losses.PENALTIES`` (WGAN-GP's gradient penalty, R1), applied every ``penalty_every`` steps
  with its weight scaled by that interval (lazy regularisation); ``clip_value`` clips the
  discriminator's weights after each update (WGAN).
* ``n_critic``: one step is one discriminator update on one batch; the generator is updated on
  every ``n_critic``-th step (so ``num_steps`` counts discriminator updates); ``critic_burst``
  gives some generator updates more discriminator steps (the reference WGAN code's schedule).
* ``d_learning_rate`` sets the discriminator's own learning rate (TTUR).
* ``diffaugment`` applies the same family of differentiable augmentations to real and fake
  inputs of the discriminator (genjax.data.augment); penalties see the augmented inputs.

The networks' specs (``net.spec``, :mod:`genjax.models.spec`) say what else is trained:
a generator with ``num_classes > 0`` is class-conditional (labels are drawn uniformly for fakes,
and a discriminator whose spec takes ``labels`` judges real images under the real batch's labels
and fakes under their own, penalties included: cGAN-projection);
a discriminator returning ``class_logits`` for a conditional generator adds AC-GAN's auxiliary
cross-entropy (``aux_weight``); a generator with ``num_categorical``/``num_continuous`` codes
and a discriminator returning ``code_logits``/``code_mean`` adds InfoGAN's mutual-information
bound (``info_weight``, ``info_continuous_weight``); ``labelled_per_class > 0`` with an
unconditional generator and ``class_logits`` makes the discriminator a semi-supervised (K+1)-class
classifier trained on that many labelled examples per class (SGAN, ``supervised_weight``), and
``feature_matching`` replaces the generator's loss by feature matching (Salimans et al. 2016).
Each of these is a :class:`~genjax.methods.gan_parts.Term`, chosen once at construction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import data
from genjax import errors
from genjax import kernels
from genjax import losses
from genjax import parallel
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.methods import gan_parts
from genjax.methods.base import Method
from genjax.methods.base import TrainState

_SIGMOID_LOSSES = ("non_saturating", "minimax")
_NON_NEGATIVE = ("aux_weight", "info_weight", "info_continuous_weight", "supervised_weight")


NOISE = {
    "normal": jax.random.normal,
    "uniform": functools.partial(jax.random.uniform, minval=-1.0, maxval=1.0),
}


class Adversarial(Method):
  DEFAULTS = dict(
      loss="non_saturating",  # a key of losses.GAN_LOSSES
      noise="normal",  # the generator's noise z: 'normal' N(0, 1) or 'uniform' U(-1, 1)
      **gan_parts.CRITIC_DEFAULTS,
      aux_weight=1.0,  # AC-GAN: weight of the auxiliary classifier's cross-entropy
      info_weight=1.0,  # InfoGAN: weight of the categorical code's MI bound
      info_continuous_weight=1.0,  # InfoGAN: weight of the continuous codes' MI bound
      feature_matching="",  # generator loss: match the discriminator's mean features, by
                            # their 'l2' (squared) or 'l1' (absolute) difference ('' = off)
      labelled_per_class=0,  # SGAN: labelled training examples per class (0 = none)
      supervised_weight=1.0,  # SGAN: weight of the labelled examples' cross-entropy
      d_ema_decay=0.0,  # EMA of the discriminator's weights (0 = off), used when it classifies
  )
  SAMPLE_NET = "generator"

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    errors.check_config_choice("method.noise", m.noise, NOISE)
    errors.check_config_choice("method.loss", m.loss, losses.GAN_LOSSES)
    gan_parts.validate_critic(config)
    if not isinstance(m.labelled_per_class, int) or m.labelled_per_class < 0:
      raise ConfigError(f"config.method.labelled_per_class must be an integer >= 0, got "
                        f"{m.labelled_per_class!r}")
    if not 0.0 <= m.d_ema_decay < 1.0:
      raise ConfigError(f"config.method.d_ema_decay must be in [0, 1) (0 disables it), got "
                        f"{m.d_ema_decay}")
    for key in _NON_NEGATIVE:
      if not m[key] >= 0:
        raise ConfigError(f"config.method.{key} must be >= 0, got {m[key]}")
    if m.feature_matching not in ("", "l1", "l2"):
      raise ConfigError(f"config.method.feature_matching must be '', 'l1' or 'l2', got "
                        f"{m.feature_matching!r}")
    d_norm = config.model.get("d_norm") or config.model.get("norm")
    if m.penalty == "gp" and d_norm == "batch":
      flag = "d_norm" if "d_norm" in config.model else "norm"
      raise ConfigError(f"the gradient penalty is per example but BatchNorm mixes the batch: set "
                        f"--config.model.{flag}=none (WGAN-GP's critic has no BatchNorm)")
    if m.labelled_per_class and data.DATASETS[config.dataset.name].num_classes < 2:
      raise ConfigError(f"config.method.labelled_per_class needs labels, and dataset "
                        f"{config.dataset.name!r} has none")

  def __init__(self, config, image_shape, num_classes, axis_name=None,
               conv_backend=kernels.XLA):
    super().__init__(config, image_shape, num_classes, axis_name, conv_backend)
    g = self.abstract_nets["generator"].spec
    d = self.abstract_nets["discriminator"].spec
    self.g_spec, self.d_spec = g, d
    self.latent_dim, self.cond_classes = g.latent_dim, g.num_classes
    self.num_categorical, self.num_continuous = g.num_categorical, g.num_continuous
    self.critic = gan_parts.Critic(self.mc, losses.GAN_LOSSES[self.mc.loss], axis_name)
    outputs = set(d.returns) or {"logit"}
    name, mc = config.model.name, self.mc
    if self.cond_classes and self.cond_classes != num_classes:
      raise ConfigError(f"model {name!r} is conditioned on {self.cond_classes} classes but "
                        f"{config.dataset.name} has {num_classes}; set "
                        f"--config.model.num_classes={num_classes}")
    self.semi = mc.labelled_per_class > 0
    if self.semi and (self.cond_classes or "class_logits" not in outputs):
      raise ConfigError(f"config.method.labelled_per_class needs an unconditional generator and "
                        f"a discriminator with class logits (e.g. model 'sgan'); {name!r} is not")
    if "class_logits" in outputs and not (self.cond_classes or self.semi):
      raise ConfigError(f"model {name!r} has a classifying discriminator: set "
                        f"--config.method.labelled_per_class (e.g. 10) to train it")
    info = bool(self.num_categorical or self.num_continuous)
    if info and not {"code_logits", "code_mean"} <= outputs:
      raise ConfigError(f"model {name!r} has latent codes but its discriminator has no Q head")
    if mc.feature_matching and "features" not in outputs:
      raise ConfigError(f"config.method.feature_matching needs a discriminator that returns "
                        f"features; {name!r} does not")
    self.terms: list[gan_parts.Term] = []
    if self.cond_classes and "class_logits" in outputs:
      self.terms.append(gan_parts.AuxiliaryClassifier(mc.aux_weight))
    if info:
      self.terms.append(gan_parts.MutualInformation(
          self.num_categorical, self.num_continuous, mc.info_weight, mc.info_continuous_weight))
    if self.semi:
      self.terms.append(gan_parts.SupervisedClasses(mc.supervised_weight))

  def ema_decay(self, role: str) -> float:
    if role == "discriminator":
      return self.mc.d_ema_decay
    return super().ema_decay(role)

  def learning_rate(self, role: str) -> float:
    if role == "discriminator" and self.mc.d_learning_rate:
      return self.mc.d_learning_rate
    return super().learning_rate(role)

  # --- latents and network calls ------------------------------------------------------------

  def sample_latent(self, key: jax.Array, n: int, axis_name: str | None) -> dict[str, jax.Array]:
    """Noise ``z`` (from ``key`` itself), and labels / codes where the generator takes them."""
    latent = {"z": parallel.batch_random(NOISE[self.mc.noise], key, (n, self.latent_dim),
                                         axis_name)}
    if self.cond_classes:
      latent["labels"] = parallel.batch_random(jax.random.randint, jax.random.fold_in(key, 1),
                                               (n,), axis_name, minval=0,
                                               maxval=self.cond_classes)
    if self.num_categorical:
      latent["cat"] = parallel.batch_random(jax.random.randint, jax.random.fold_in(key, 2),
                                            (n,), axis_name, minval=0,
                                            maxval=self.num_categorical)
    if self.num_continuous:
      latent["cont"] = parallel.batch_random(jax.random.uniform, jax.random.fold_in(key, 3),
                                             (n, self.num_continuous), axis_name, minval=-1.0,
                                             maxval=1.0)
    return latent

  def generate(self, g: nnx.Module, latent: dict[str, jax.Array]) -> jax.Array:
    z = latent["z"]
    parts = [z]
    if "cat" in latent:
      parts.append(jax.nn.one_hot(latent["cat"], self.num_categorical, dtype=z.dtype))
    if "cont" in latent:
      parts.append(latent["cont"].astype(z.dtype))
    z = jnp.concatenate(parts, -1) if len(parts) > 1 else z
    return g(z, latent["labels"]) if "labels" in latent else g(z)

  def call_d(self, d: nnx.Module, x: jax.Array, labels, rng) -> dict[str, jax.Array]:
    """The discriminator's outputs as a dict (``{"logit": out}`` for one that returns its
    logits), given the labels and ``rng`` (None: deterministic) where its spec takes them."""
    kwargs = {k: v for k, v in (("labels", labels), ("rng", rng)) if k in self.d_spec.takes}
    out = d(x, **kwargs)
    return dict(out) if self.d_spec.returns else {"logit": out}

  def features(self, state, images):
    """The discriminator's last features (inference mode: BatchNorm's running statistics)."""
    name = self.config.model.name
    if "features" not in self.d_spec.returns or self.d_spec.takes:
      raise ConfigError(f"model {name!r}'s discriminator does not give features of an image "
                        f"alone (it returns {', '.join(self.d_spec.returns) or 'a logit'} and "
                        f"takes {', '.join(self.d_spec.takes) or 'nothing else'})")
    d = self.net("discriminator", state.params["discriminator"],
                 state.buffers["discriminator"], train=False)
    return self.call_d(d, self.images(images), None, None)["features"].astype(jnp.float32)

  def labelled_batch(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` examples drawn from the labelled subset (without replacement while they last)."""
    subset = self._labelled_subset()
    size = len(subset["label"])
    global_n = n * (jax.lax.axis_size(self.axis_name) if self.axis_name else 1)
    idx = parallel.batch_random(
        lambda k, shape: jax.random.choice(k, size, shape, replace=global_n > size), key, (n,),
        self.axis_name)
    return self.images(jnp.asarray(subset["image"])[idx]), jnp.asarray(subset["label"])[idx]

  @functools.cache
  def _labelled_subset(self) -> dict[str, np.ndarray]:
    ds = self.config.dataset
    arrays = data.load_config(ds)
    try:
      idx = data.labelled_subset(arrays["label"], self.mc.labelled_per_class, self.config.seed)
    except DataError as e:
      raise ConfigError(f"config.method.labelled_per_class: {e}") from None
    return {"image": arrays["image"][idx], "label": arrays["label"][idx].astype(np.int32)}

  # --- objectives ---------------------------------------------------------------------------

  def generator_loss(self, out_fake, out_real, ctx: gan_parts.Context) -> jax.Array:
    if self.mc.feature_matching:
      loss = losses.feature_matching(jax.lax.stop_gradient(out_real["features"]),
                                     out_fake["features"], self.mc.feature_matching)
    else:
      loss = self.critic.g_loss(out_fake["logit"])
    for term in self.terms:
      extra, _ = term.g(out_fake, ctx)
      if extra is not None:
        loss += extra
    return loss

  # --- the update ---------------------------------------------------------------------------

  def step(self, state: TrainState, batch) -> tuple[TrainState, dict]:
    mc, critic = self.mc, self.critic
    key = self.step_key(state)
    aux_key = jax.random.fold_in(key, 0x5A)
    sub = lambda i: jax.random.fold_in(aux_key, i)  # pylint: disable=unnecessary-lambda-assignment
    real = self.images(batch["image"])
    n = real.shape[0]
    real_labels = batch.get("label")
    latent = self.sample_latent(key, n, self.axis_name)
    fake_labels = latent.get("labels")

    def generate(params):
      g = self.net("generator", params, state.buffers["generator"])
      return self.generate(g, latent), self.buffers_of(g)

    fake, g_vjp, g_buffers = jax.vjp(generate, state.params["generator"], has_aux=True)
    real_in = critic.augment(real, sub(0))
    fake_in = critic.augment(jax.lax.stop_gradient(fake), sub(1))
    labelled = self.labelled_batch(sub(2), n) if self.semi else None
    u = critic.penalty_draws(sub(3), n)

    def d_objective(params):
      d = self.net("discriminator", params, state.buffers["discriminator"])
      out_r = self.call_d(d, real_in, real_labels, sub(10))
      out_f = self.call_d(d, fake_in, fake_labels, sub(11))
      loss = critic.d_loss(out_r["logit"], out_f["logit"])

      def classify_labelled():  # SGAN: the discriminator's classes of the labelled batch
        x_l, y_l = labelled
        return self.call_d(d, critic.augment(x_l, sub(4)), None, sub(12))["class_logits"], y_l
      ctx = gan_parts.Context(real_labels, latent, classify_labelled)
      metrics = {}
      for term in self.terms:
        extra, term_metrics = term.d(out_r, out_f, ctx)
        loss += extra
        metrics.update(term_metrics)
      new_buffers = self.buffers_of(d)
      if critic.penalty_fn:
        def judge(labels, rng):
          def d_fn(x):  # a fresh module: the penalty's forward pass leaves no state behind
            d_ = self.net("discriminator", params, state.buffers["discriminator"])
            return self.call_d(d_, x, labels, rng)["logit"]
          return d_fn
        # Fakes are judged under the labels they were generated from (R2), as in the loss.
        p = critic.penalty(judge(real_labels, sub(13)), judge(fake_labels, sub(14)), real_in,
                           fake_in, u, state.step)
        loss += critic.weighted(p)
        metrics["penalty"] = p
      return loss, (out_r, out_f, metrics, new_buffers)

    d_params, d_opt, d_loss, (out_r, out_f, d_metrics, d_buffers) = critic.update(
        self, state, "discriminator", d_objective)
    ctx = gan_parts.Context(real_labels, latent)

    def generator_step():
      def g_objective(fake_images):
        d = self.net("discriminator", d_params, d_buffers)
        out_fake = self.call_d(d, critic.augment(fake_images, sub(5)), fake_labels, sub(20))
        out_real = (self.call_d(d, critic.augment(real, sub(6)), real_labels, sub(21))
                    if mc.feature_matching else None)
        return self.generator_loss(out_fake, out_real, ctx), self.buffers_of(d)

      (g_loss, new_d_buffers), fake_grads = jax.value_and_grad(
          g_objective, has_aux=True)(fake)
      (g_grads,) = g_vjp(fake_grads)
      g_params, g_opt = self.update(state, "generator", g_grads)
      return g_params, g_opt, new_d_buffers, g_loss

    turn = critic.generator_turn(state.step)
    if turn is True:  # every step (a static schedule): no cond
      g_params, g_opt, d_buffers, g_loss = generator_step()
    else:
      def critic_only():  # loss_g as measured by the discriminator before its update
        loss = self.generator_loss(jax.lax.stop_gradient(out_f), out_r, ctx)
        return state.params["generator"], state.opt_state["generator"], d_buffers, loss
      g_params, g_opt, d_buffers, g_loss = jax.lax.cond(turn, generator_step, critic_only)

    squash = jax.nn.sigmoid if mc.loss in _SIGMOID_LOSSES else (lambda v: v)
    metrics = {"loss_d": d_loss, "loss_g": g_loss,
               "d_real": jnp.mean(squash(out_r["logit"].astype(jnp.float32))),
               "d_fake": jnp.mean(squash(out_f["logit"].astype(jnp.float32))), **d_metrics}
    return self.finish(state, {"generator": g_params, "discriminator": d_params},
                       {"generator": g_buffers, "discriminator": d_buffers},
                       {"generator": g_opt, "discriminator": d_opt}, metrics)

  # --- evaluation and samples ---------------------------------------------------------------

  def eval_inputs(self, rng, n, condition):
    del condition
    return self.sample_latent(rng, n, None)

  def eval_labels(self, inputs):
    return inputs["labels"] if self.cond_classes else None

  def eval_generate(self, state, latent):
    return self.generate(self.sampler_net(state), latent).astype(jnp.float32)

  def _grid(self, state, latent, rows: int, cols: int) -> jax.Array:
    images = self.eval_generate(state, latent)
    return images.reshape(rows, cols, *images.shape[1:])

  def sample_grids(self, state, examples, rng):
    """``samples``; one row per class for conditional models; for InfoGAN also ``categorical``
    (each row one noise vector, the category varying along it) and ``continuous_<j>`` (each row
    one category, code j going from -2 to 2 along it, the noise and other codes fixed)."""
    n = examples["image"].shape[0]
    if self.cond_classes:
      rows, cols = self.cond_classes, max(1, n // self.cond_classes)
      latent = self.sample_latent(rng, cols, None)
      latent = {k: jnp.tile(v, (rows,) + (1,) * (v.ndim - 1)) for k, v in latent.items()}
      latent["labels"] = jnp.repeat(jnp.arange(rows), cols)
    else:
      cols = int(np.sqrt(n))
      rows = max(1, n // cols)
      latent = self.sample_latent(rng, rows * cols, None)
    grids = {"samples": self._grid(state, latent, rows, cols)}
    if self.num_categorical or self.num_continuous:
      k = self.num_categorical
      if k:
        rows = max(1, min(8, n // k))
        base = self.sample_latent(jax.random.fold_in(rng, 1), rows, None)
        latent = {name: jnp.repeat(v, k, axis=0) for name, v in base.items()}
        latent["cat"] = jnp.tile(jnp.arange(k), rows)
        if self.num_continuous:
          latent["cont"] = jnp.zeros_like(latent["cont"])
        grids["categorical"] = self._grid(state, latent, rows, k)
      values = jnp.linspace(-2.0, 2.0, 8)
      rows = max(1, k)
      base = self.sample_latent(jax.random.fold_in(rng, 2), 1, None)
      for j in range(self.num_continuous):
        latent = {name: jnp.repeat(v, rows * 8, axis=0) for name, v in base.items()}
        if k:
          latent["cat"] = jnp.repeat(jnp.arange(k), 8)
        cont = jnp.zeros((rows * 8, self.num_continuous))
        latent["cont"] = cont.at[:, j].set(jnp.tile(values, rows))
        grids[f"continuous_{j}"] = self._grid(state, latent, rows, 8)
    return grids

  # --- the discriminator as a classifier (SGAN, InfoGAN) ------------------------------------

  def predict_classes(self, d_params, d_buffers, images: jax.Array) -> jax.Array:
    """The discriminator's class (SGAN) or InfoGAN's categorical code for ``images`` (uint8),
    in inference mode (no noise, running statistics)."""
    d = self.net("discriminator", d_params, d_buffers, train=False)
    out = self.call_d(d, self.images(images), None, None)
    return jnp.argmax(out["class_logits" if self.semi else "code_logits"], -1)


def class_accuracy(method: Adversarial, state: TrainState, images: np.ndarray,
                   labels: np.ndarray, batch_size: int = 1000) -> dict:
  """Test accuracy of the discriminator's classes (SGAN) or, for InfoGAN, of the categorical code
  under the best one-to-one mapping of codes to labels (Hungarian algorithm), with the
  discriminator's EMA weights where ``method.d_ema_decay`` keeps them."""
  from genjax.metrics import clustering  # pylint: disable=g-import-not-at-top
  if not (method.semi or method.num_categorical):
    raise ConfigError(f"model {method.config.model.name!r} classifies nothing: accuracy needs "
                      f"an SGAN discriminator or an InfoGAN categorical code")
  # The discriminator's EMA weights where kept (Salimans et al. test with averaged weights).
  tree = (state.ema.get("discriminator", state.params["discriminator"]),
          state.buffers["discriminator"])
  predictions = np.asarray(parallel.BatchedApply(lambda t, x: method.predict_classes(*t, x), tree,
                                        batch_size=batch_size)(images))
  labels = np.asarray(labels)
  if method.semi:
    return {"accuracy": float(np.mean(predictions == labels)), "mode": "supervised",
            "num_examples": int(len(labels))}
  accuracy, mapping = clustering.cluster_accuracy(predictions, labels)
  return {"accuracy": accuracy, "mode": "hungarian", "mapping": mapping,
          "num_examples": int(len(labels))}
