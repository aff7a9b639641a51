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

def bernoulli_nll(logits: Array, x: Array) -> Array:
  """-log p(x | logits) under independent Bernoullis, in nats per example. ``x`` in [0, 1]."""
  logits, x = _f32(logits, x)
  return _sum_per_example(jax.nn.softplus(logits) - x * logits)


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
# both returning scalars (batch means). Adding a loss is adding one entry to GAN_LOSSES.

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


GAN_LOSSES: dict[str, tuple[Callable[[Array, Array], Array], Callable[[Array], Array]]] = {
    "non_saturating": (d_loss_bce, g_loss_non_saturating),
    "minimax": (d_loss_bce, g_loss_minimax),
}
