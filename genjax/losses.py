"""Pure loss functions. Per-example losses sum over non-batch axes; callers take the batch mean.

All functions compute in float32 whatever the dtype of their inputs (bf16 compute keeps fp32
losses).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def _f32(*xs):
  return [jnp.asarray(x, jnp.float32) for x in xs]


def _sum_per_example(x: Array) -> Array:
  return x.reshape(x.shape[0], -1).sum(-1)


# --- likelihoods and divergences (autoencoders) ------------------------------------------------

@jax.custom_jvp
def softplus(x: Array) -> Array:
  """``log(1 + e^x)`` as ``max(x, 0) + log1p(e^-|x|)``: exact and stable, and on CPU about 5x
  faster than ``jax.nn.softplus`` (XLA's logaddexp), which the likelihood evaluation's 5,000
  decodings per image make the bulk of its time. Its derivative is ``sigmoid(x)`` everywhere
  (the max and abs alone would give 0 at ``x = 0``)."""
  return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return softplus(x), jax.nn.sigmoid(x) * t


def bernoulli_nll(logits: Array, x: Array) -> Array:
  """-log p(x | logits) under independent Bernoullis, in nats per example. ``x`` in [0, 1]."""
  logits, x = _f32(logits, x)
  return _sum_per_example(softplus(logits) - x * logits)


def gaussian_nll(mean: Array, x: Array, sigma: float) -> Array:
  """-log N(x | mean, sigma^2 I) in nats per example."""
  mean, x = _f32(mean, x)
  per = 0.5 * jnp.square((x - mean) / sigma) + math.log(sigma) + 0.5 * math.log(2 * math.pi)
  return _sum_per_example(per)


def gaussian_kl(mu: Array, logvar: Array) -> Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, in nats."""
  mu, logvar = _f32(mu, logvar)
  return _sum_per_example(0.5 * (jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar))


# --- GAN objectives ----------------------------------------------------------------------------
# Each loss is a pair (discriminator_loss(real_logits, fake_logits), generator_loss(fake_logits)),
# both returning scalars (batch means) of the discriminator's raw outputs (logits for the
# sigmoid-based losses, critic values for Wasserstein/hinge). Adding a loss is adding one entry
# to GAN_LOSSES; ``config.method.loss`` selects it.

def _mean(x: Array) -> Array:
  return jnp.mean(jnp.asarray(x, jnp.float32))


def _softplus_mean(x: Array) -> Array:
  return jnp.mean(jax.nn.softplus(jnp.asarray(x, jnp.float32)))


def d_loss_bce(real: Array, fake: Array) -> Array:
  """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logit)."""
  return _softplus_mean(-real) + _softplus_mean(fake)


def g_loss_non_saturating(fake: Array) -> Array:
  """-log D(G(z)) (Goodfellow et al. 2014, section 3)."""
  return _softplus_mean(-fake)


def g_loss_minimax(fake: Array) -> Array:
  """log(1 - D(G(z))): the original minimax objective for G."""
  return -_softplus_mean(fake)


def d_loss_least_squares(real: Array, fake: Array) -> Array:
  """LSGAN (Mao et al. 2017, a-b-c = 0-1-1): 1/2 E(D(x) - 1)^2 + 1/2 E D(G(z))^2."""
  real, fake = _f32(real, fake)
  return 0.5 * jnp.mean(jnp.square(real - 1.0)) + 0.5 * jnp.mean(jnp.square(fake))


def g_loss_least_squares(fake: Array) -> Array:
  """LSGAN generator: 1/2 E(D(G(z)) - 1)^2."""
  return 0.5 * jnp.mean(jnp.square(jnp.asarray(fake, jnp.float32) - 1.0))


def d_loss_wasserstein(real: Array, fake: Array) -> Array:
  """WGAN critic (Arjovsky et al. 2017): E D(G(z)) - E D(x), the negated Wasserstein estimate."""
  return _mean(fake) - _mean(real)


def g_loss_wasserstein(fake: Array) -> Array:
  """WGAN generator: -E D(G(z)). Also the generator loss of the hinge GAN."""
  return -_mean(fake)


def d_loss_hinge(real: Array, fake: Array) -> Array:
  """Hinge loss (Lim & Ye 2017; Miyato et al. 2018): E relu(1 - D(x)) + E relu(1 + D(G(z)))."""
  real, fake = _f32(real, fake)
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


GAN_LOSSES: dict[str, tuple[Callable[[Array, Array], Array], Callable[[Array], Array]]] = {
    "non_saturating": (d_loss_bce, g_loss_non_saturating),
    "minimax": (d_loss_bce, g_loss_minimax),
    "least_squares": (d_loss_least_squares, g_loss_least_squares),
    "wasserstein": (d_loss_wasserstein, g_loss_wasserstein),
    "hinge": (d_loss_hinge, g_loss_wasserstein),
}


# --- discriminator penalties -------------------------------------------------------------------
# A penalty is ``penalty(d_real, d_fake, real, fake, u) -> scalar``. ``d_real`` and ``d_fake`` map
# a batch of images to the discriminator's raw outputs (B,) under the conditioning of the real and
# of the fake batch: a conditional GAN's real labels, and the labels the fakes were generated from
# (one function serves both where the condition is part of the input or there is none). They must
# be pure (no state updates). ``u`` holds one U(0, 1) draw per example (the interpolation weights
# of the gradient penalty). Adding a penalty is adding one entry to PENALTIES;
# ``config.method.penalty`` selects it and ``penalty_weight`` scales it.

def _input_grad_norm_sq(d_fn: Callable[[Array], Array], x: Array) -> Array:
  """||grad_x D(x)||^2 per example, in float32."""
  g = jax.grad(lambda v: jnp.sum(jnp.asarray(d_fn(v), jnp.float32)))(x)
  return _sum_per_example(jnp.square(jnp.asarray(g, jnp.float32)))


def gradient_penalty(d_real: Callable[[Array], Array], d_fake: Callable[[Array], Array],
                     real: Array, fake: Array, u: Array) -> Array:
  """WGAN-GP (Gulrajani et al. 2017): E (||grad D(x_hat)||_2 - 1)^2 on the interpolates
  ``x_hat = u x + (1 - u) G(z)``. The paper's weight is lambda = 10.

  An interpolate has no label of its own: it is judged under the real example's (``d_real``), as
  StudioGAN's conditional WGAN-GP does, whose fake labels are drawn independently of the real ones
  as genjax's are."""
  del d_fake
  u = u.reshape((-1,) + (1,) * (real.ndim - 1)).astype(real.dtype)
  x_hat = u * real + (1.0 - u) * jax.lax.stop_gradient(fake)
  norm = jnp.sqrt(_input_grad_norm_sq(d_real, x_hat) + 1e-12)
  return jnp.mean(jnp.square(norm - 1.0))


def r1_penalty(d_real: Callable[[Array], Array], d_fake: Callable[[Array], Array], real: Array,
               fake: Array, u: Array) -> Array:
  """R1 (Mescheder et al. 2018): 1/2 E ||grad D(x)||^2 on real data, so that the weight is the
  paper's gamma."""
  del d_fake, fake, u
  return 0.5 * jnp.mean(_input_grad_norm_sq(d_real, real))


def r2_penalty(d_real: Callable[[Array], Array], d_fake: Callable[[Array], Array], real: Array,
               fake: Array, u: Array) -> Array:
  """R2 (Mescheder et al. 2018): R1's penalty on the generated samples instead of the data,
  1/2 E ||grad D(G(z))||^2, each judged under its own label (``d_fake``)."""
  del d_real, real, u
  return 0.5 * jnp.mean(_input_grad_norm_sq(d_fake, jax.lax.stop_gradient(fake)))


PENALTIES: dict[str, Callable[..., Array]] = {
    "gp": gradient_penalty,
    "r1": r1_penalty,
    "r2": r2_penalty,
}


def clip_weights(params, value: float):
  """WGAN's weight clipping: every parameter clamped to [-value, value]."""
  return jax.tree.map(lambda p: jnp.clip(p, -value, value), params)


# --- auxiliary terms (AC-GAN, InfoGAN, SGAN) ---------------------------------------------------

def cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy of integer ``labels``."""
  logits = jnp.asarray(logits, jnp.float32)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None].astype(jnp.int32), -1))


def categorical_mi_bound(logits: Array, codes: Array) -> Array:
  """InfoGAN's lower bound on I(c; G(z, c)) for a uniform categorical code with K values:
  H(c) + E log Q(c | x) = log K - CE (Chen et al. 2016, lemma 5.1), in nats."""
  return math.log(logits.shape[-1]) - cross_entropy(logits, codes)


def continuous_mi_bound(mean: Array, codes: Array, low: float = -1.0,
                        high: float = 1.0) -> Array:
  """The same bound for independent U(low, high) codes and a unit-variance Gaussian Q:
  sum_j [log(high - low) + E log N(c_j | mean_j, 1)], in nats."""
  mean, codes = _f32(mean, codes)
  log_q = -0.5 * jnp.square(codes - mean) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(jnp.mean(log_q, 0) + math.log(high - low))


def feature_matching(real_features: Array, fake_features: Array, distance: str = "l2") -> Array:
  """Salimans et al. (2016): mean over features of (E f(x) - E f(G(z)))^2 (``"l2"``), or of
  |E f(x) - E f(G(z))| (``"l1"``, their MNIST code)."""
  real_features, fake_features = _f32(real_features, fake_features)
  diff = jnp.mean(real_features, 0) - jnp.mean(fake_features, 0)
  if distance == "l1":
    return jnp.mean(jnp.abs(diff))
  if distance == "l2":
    return jnp.mean(jnp.square(diff))
  raise ValueError(f"feature matching distance must be 'l1' or 'l2', got {distance!r}")


# --- one-class objectives (Deep SVDD) ----------------------------------------------------------

def squared_distance(z: Array, center: Array) -> Array:
  """``||z - center||^2`` per example: Deep SVDD's distance to its hypersphere's centre."""
  z, center = _f32(z, center)
  return _sum_per_example(jnp.square(z - center))


def svdd_one_class(dist: Array) -> Array:
  """One-class Deep SVDD (Ruff et al. 2018, eq. 4): the mean squared distance to the centre."""
  return jnp.mean(jnp.asarray(dist, jnp.float32))


def svdd_soft_boundary(dist: Array, radius: Array, nu: float) -> Array:
  """Soft-boundary Deep SVDD (eq. 3): ``R^2 + (1/nu) mean(max(0, ||φ(x) - c||^2 - R^2))``; ``nu``
  bounds the fraction of training points outside the sphere from above."""
  dist, r2 = _f32(dist, jnp.square(radius))
  return r2 + jnp.mean(jnp.maximum(0.0, dist - r2)) / nu


def svdd_radius(dist: Array, nu: float) -> Array:
  """The radius that solves the soft-boundary objective for fixed φ: the ``(1 - nu)``-quantile
  of the distances ``sqrt(dist)`` (linear interpolation, as ``np.quantile``)."""
  return jnp.quantile(jnp.sqrt(jnp.asarray(dist, jnp.float32)), 1.0 - nu)


def svdd_center(mean: Array, eps: float) -> Array:
  """The hypersphere's centre from the initial network's mean output: entries within ``eps``
  of 0 move to ``±eps`` (their sign's; an exact 0 stays, as in the reference), since a unit
  whose target is 0 is matched trivially by zero weights."""
  mean = jnp.asarray(mean, jnp.float32)
  small = jnp.abs(mean) < eps
  return jnp.where(small & (mean < 0), -eps, jnp.where(small & (mean > 0), eps, mean))
