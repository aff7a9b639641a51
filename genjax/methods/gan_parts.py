"""The parts that adversarial methods are built from.

* :class:`Critic`: everything a discriminator update needs besides the networks: the pair of
  adversarial objectives, DiffAugment, a (lazy) gradient penalty, weight clipping and the
  ``n_critic`` schedule. :meth:`Critic.update` is the discriminator step itself.
* :class:`Term` and its subclasses: objectives some families add to both players on the
  discriminator's extra outputs (AC-GAN's auxiliary classifier, InfoGAN's mutual information,
  SGAN's supervised classes). A method picks them once, from the networks' specs
  (:mod:`genjax.models.spec`) and the config, and adds each one's losses in turn.

``genjax.methods.adversarial`` (noise to image) and ``genjax.methods.translation`` (image to
image) compose these parts; neither re-implements them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from genjax import errors
from genjax import losses
from genjax import parallel
from genjax.data import augment
from genjax.errors import ConfigError

Array = jax.Array

# The config.method keys of every adversarial method, with their defaults.
CRITIC_DEFAULTS = dict(
    d_learning_rate=0.0,  # discriminator learning rate (TTUR); 0 = optimizer.learning_rate
    n_critic=1,  # discriminator updates per generator update (one per step)
    # (n, first, every): n discriminator updates for each of the first `first` generator updates
    # and for every `every`-th one, n_critic otherwise (the reference WGAN code's Diters
    # schedule is (100, 25, 500)); () = n_critic throughout
    critic_burst=(),
    penalty="none",  # 'none' or a key of losses.PENALTIES (gp: WGAN-GP, r1, r2)
    penalty_weight=10.0,  # lambda of the gradient penalty, gamma of R1/R2
    penalty_every=1,  # lazy regularisation: the penalty every N steps, weighted by N
    clip_value=0.0,  # WGAN weight clipping of the discriminator to [-c, c] (0 = off)
    diffaugment="",  # DiffAugment policy, e.g. 'color,translation,cutout' ('' = off)
)


def validate_critic(config) -> None:
  """One-line ConfigErrors for the :data:`CRITIC_DEFAULTS` keys of ``config.method``."""
  m = config.method
  errors.check_config_choice("method.penalty", m.penalty, ("none", *losses.PENALTIES))
  for key in ("n_critic", "penalty_every"):
    if not isinstance(m[key], int) or isinstance(m[key], bool) or m[key] < 1:
      raise ConfigError(f"config.method.{key} must be an integer >= 1, got {m[key]!r}")
  burst = tuple(m.critic_burst)
  if burst and (len(burst) != 3 or not all(isinstance(v, int) and v >= 1 for v in burst)
                or burst[1] > burst[2]):
    raise ConfigError("config.method.critic_burst must be () or (n, first, every), integers "
                      f">= 1 with first <= every, got {burst!r}")
  for key in ("d_learning_rate", "penalty_weight", "clip_value"):
    if not m[key] >= 0:
      raise ConfigError(f"config.method.{key} must be >= 0, got {m[key]}")
  try:
    augment.parse_policy(m.diffaugment)
  except ValueError as e:
    raise ConfigError(f"config.method.diffaugment: {e}") from None


class Critic:
  """The discriminator side of an adversarial method.

  Args:
    mc: ``config.method`` (the :data:`CRITIC_DEFAULTS` keys).
    objectives: ``(d_loss(real_logits, fake_logits), g_loss(fake_logits))``.
    axis_name: the pmap axis, if any (augmentations and penalty draws are per global batch).
  """

  def __init__(self, mc, objectives: tuple[Callable, Callable], axis_name: str | None):
    self.mc, self.axis_name = mc, axis_name
    self.d_loss, self.g_loss = objectives
    self.policy = augment.parse_policy(mc.diffaugment)
    self.penalty_fn = losses.PENALTIES.get(mc.penalty)

  def augment(self, x: Array, key: Array) -> Array:
    """DiffAugment (the same family of transformations for real and fake inputs)."""
    return augment.diff_augment(x, self.policy, key, self.axis_name) if self.policy else x

  def penalty_draws(self, key: Array, n: int) -> Array | None:
    """The per-example U(0, 1) draws of the penalty (None without one)."""
    return (parallel.batch_random(jax.random.uniform, key, (n,), self.axis_name)
            if self.penalty_fn else None)

  def penalty(self, d_real: Callable[[Array], Array], d_fake: Callable[[Array], Array],
              real_in: Array, fake_in: Array, u, step: Array) -> Array:
    """The raw penalty of this step (0 on steps a lazy penalty skips). ``d_real`` and ``d_fake``
    map inputs to logits under the real and the fake batch's conditioning (a conditional GAN's
    real labels and the fakes' own; see :mod:`genjax.losses`) and must leave no state behind."""
    every = self.mc.penalty_every

    def penalty():
      return self.penalty_fn(d_real, d_fake, real_in, fake_in, u).astype(jnp.float32)
    return (penalty() if every == 1 else
            jax.lax.cond(step % every == 0, penalty, lambda: jnp.zeros((), jnp.float32)))

  def weighted(self, p: Array) -> Array:
    """What the penalty adds to the loss: its weight times the lazy interval."""
    return self.mc.penalty_weight * self.mc.penalty_every * p

  def update(self, method, state, role: str, objective: Callable[[Any], tuple[Array, Any]]):
    """The discriminator step: ``objective(params) -> (loss, aux)`` is differentiated, network
    ``role`` is updated by its optimizer and clipped (WGAN). Returns ``(params, opt_state,
    loss, aux)``."""
    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params[role])
    params, opt_state = method.update(state, role, grads)
    if self.mc.clip_value:
      params = losses.clip_weights(params, self.mc.clip_value)
    return params, opt_state, loss, aux

  def generator_turn(self, step: Array) -> Array | bool:
    """Whether the generator is updated on this step: every ``n_critic``-th, or as
    ``critic_burst`` schedules it (a function of the step alone, so resuming needs no counter);
    the Python ``True`` where every step is one."""
    n = self.mc.n_critic
    if not self.mc.critic_burst:
      return True if n == 1 else step % n == n - 1
    burst, first, every = self.mc.critic_burst
    # generator updates 0..first-1 take `burst` steps each, first..every-1 take n each, then
    # each period of `every` updates takes burst + (every - 1) * n steps, its burst first
    opening = first * burst
    ramp = opening + (every - first) * n
    r = (step - ramp) % (burst + (every - 1) * n)
    return jnp.where(step < opening, step % burst == burst - 1,
                     jnp.where(step < ramp, (step - opening) % n == n - 1,
                               (r == burst - 1) | ((r >= burst) & ((r - burst) % n == n - 1))))


@dataclasses.dataclass
class Context:
  """What terms see of one update: the labels of the real batch, the fake batch's latents
  (labels, codes) and, for SGAN, the discriminator's classes of the labelled batch."""
  real_labels: Array | None
  latent: dict[str, Array]
  labelled: Callable[[], tuple[Array, Array]] | None = None


class Term:
  """An extra objective on the discriminator's outputs; ``d``/``g`` return ``(loss, metrics)``
  to add to the discriminator's and the generator's losses."""

  def d(self, out_r: dict, out_f: dict, ctx: Context) -> tuple[Array, dict]:
    raise NotImplementedError

  def g(self, out_f: dict, ctx: Context) -> tuple[Array | None, dict]:
    return None, {}


class AuxiliaryClassifier(Term):
  """AC-GAN (Odena et al. 2017): the discriminator's ``class_logits`` classify real images by
  their labels and fakes by the labels they were generated from, for both players."""

  def __init__(self, weight: float):
    self.weight = weight

  def d(self, out_r, out_f, ctx):
    aux = (losses.cross_entropy(out_r["class_logits"], ctx.real_labels) +
           losses.cross_entropy(out_f["class_logits"], ctx.latent["labels"]))
    accuracy = jnp.mean(jnp.argmax(out_r["class_logits"], -1) == ctx.real_labels)
    return self.weight * aux, {"aux_loss": aux, "aux_accuracy_real": accuracy}

  def g(self, out_f, ctx):
    return self.weight * losses.cross_entropy(out_f["class_logits"], ctx.latent["labels"]), {}


class MutualInformation(Term):
  """InfoGAN (Chen et al. 2016): both players maximise the lower bound on the mutual
  information between the codes and the images, read back by the Q head."""

  def __init__(self, num_categorical: int, num_continuous: int, weight: float,
               continuous_weight: float):
    self.num_categorical, self.num_continuous = num_categorical, num_continuous
    self.weight, self.continuous_weight = weight, continuous_weight

  def _bound(self, out, latent) -> tuple[Array, dict]:
    loss, metrics = jnp.zeros((), jnp.float32), {}
    if self.num_categorical:
      mi = losses.categorical_mi_bound(out["code_logits"], latent["cat"])
      loss -= self.weight * mi
      metrics["mi_categorical"] = mi
    if self.num_continuous:
      mi = losses.continuous_mi_bound(out["code_mean"], latent["cont"])
      loss -= self.continuous_weight * mi
      metrics["mi_continuous"] = mi
    return loss, metrics

  def d(self, out_r, out_f, ctx):
    return self._bound(out_f, ctx.latent)

  def g(self, out_f, ctx):
    return self._bound(out_f, ctx.latent)


class SupervisedClasses(Term):
  """SGAN (Salimans et al. 2016): the discriminator also classifies a labelled subset."""

  def __init__(self, weight: float):
    self.weight = weight

  def d(self, out_r, out_f, ctx):
    logits, labels = ctx.labelled()
    supervised = losses.cross_entropy(logits, labels)
    return self.weight * supervised, {
        "supervised_loss": supervised,
        "supervised_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
