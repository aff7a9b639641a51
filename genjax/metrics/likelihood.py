"""Log-likelihood bounds for latent-variable models by importance sampling (pure JAX, float32).

With a diagonal Gaussian posterior ``q(z|x) = N(mu, diag(exp(logvar)))`` and the prior
``p(z) = N(0, I)``, each sample ``z_i ~ q`` has the log weight
``log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)``. The ELBO is ``mean_i log w_i`` and the
IWAE bound (Burda et al. 2016) ``log mean_i w_i``; both are per-example lower bounds on
``log p(x)`` in nats, and the IWAE bound tightens as the number of samples grows.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from genjax.errors import ConfigError

Array = jax.Array
_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(x: Array, mean: Array | float, logvar: Array | float, *,
                         event_ndims: int = 1) -> Array:
  """log N(x | mean, diag(exp(logvar))), summed over the trailing ``event_ndims`` axes.

  ``x``, ``mean`` and ``logvar`` broadcast against each other (``x`` may carry leading sample
  axes, e.g. ``[k, B, D]`` against ``[B, D]``).
  """
  x, mean, logvar = (jnp.asarray(v, jnp.float32) for v in (x, mean, logvar))
  per = -0.5 * (jnp.square(x - mean) * jnp.exp(-logvar) + logvar + _LOG_2PI)
  per = jnp.broadcast_to(per, jnp.broadcast_shapes(x.shape, mean.shape, logvar.shape))
  return per.sum(axis=tuple(range(per.ndim - event_ndims, per.ndim)))


def log_importance_weights(log_px_given_z: Array, z: Array, mu: Array, logvar: Array) -> Array:
  """``log p(x|z) + log N(z|0, I) - log q(z|x)`` per sample and example.

  Args:
    log_px_given_z: ``[k, B]``.
    z: ``[k, B, ...]`` samples.
    mu: ``[B, ...]`` posterior mean.
    logvar: ``[B, ...]`` posterior log-variance.

  Returns:
    ``[k, B]`` log weights in nats (float32).
  """
  event_ndims = jnp.ndim(mu) - 1
  log_prior = gaussian_log_density(z, 0.0, 0.0, event_ndims=event_ndims)
  log_q = gaussian_log_density(z, mu, logvar, event_ndims=event_ndims)
  return jnp.asarray(log_px_given_z, jnp.float32) + log_prior - log_q


def elbo(log_weights: Array) -> Array:
  """ELBO per example: the mean of ``[k, B]`` log weights over the k samples, ``[B]``."""
  return jnp.mean(log_weights, axis=0)


def iwae_bound(log_weights: Array) -> Array:
  """IWAE bound per example: ``logsumexp`` of ``[k, B]`` log weights over k, minus ``log k``."""
  return jax.nn.logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


def bits_per_dim(nats: Array | float, num_dims: int) -> Array | float:
  """Converts a negative log-likelihood in nats to bits per dimension: ``nats / (D ln 2)``."""
  return nats / (num_dims * math.log(2))


class LikelihoodBounds(NamedTuple):
  """Per-example lower bounds on ``log p(x)`` in nats, each ``[B]``."""
  elbo: Array
  iwae: Array


def estimate_log_likelihood(rng: Array, x: Array,
                            encode: Callable[[Array], tuple[Array, Array]],
                            log_likelihood: Callable[[Array, Array], Array], *,
                            num_samples: int, chunk_size: int | None = None) -> LikelihoodBounds:
  """ELBO and IWAE bound for a batch, drawing the importance samples in chunks.

  Only ``chunk_size`` samples are alive at a time (a ``lax.scan`` over chunks keeps a running
  logsumexp and sum), so e.g. ``num_samples=5000`` fits in memory. Sample ``i`` uses the noise
  ``normal(fold_in(rng, i))``, so the result does not depend on ``chunk_size`` (up to rounding).
  Works under ``jax.jit`` with ``num_samples`` and ``chunk_size`` static.

  Args:
    rng: PRNG key.
    x: ``[B, ...]`` batch.
    encode: ``x -> (mu, logvar)``, each ``[B, ...]``.
    log_likelihood: ``(x, z) -> log p(x|z)`` of shape ``[k, B]`` for ``z`` of shape ``[k, B, ...]``.
    num_samples: Importance samples per example, k.
    chunk_size: Samples per chunk (default: all at once).

  Returns:
    :class:`LikelihoodBounds` (ELBO estimate and IWAE_k bound, ``[B]`` each).
  """
  if num_samples < 1:
    raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
  chunk = num_samples if chunk_size is None else min(int(chunk_size), num_samples)
  if chunk < 1:
    raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
  mu, logvar = (jnp.asarray(v, jnp.float32) for v in encode(x))
  std = jnp.exp(0.5 * logvar)

  def log_weights(start, size):
    noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), mu.shape))(
        start + jnp.arange(size))
    z = mu + std * noise
    return log_importance_weights(log_likelihood(x, z), z, mu, logvar)

  def body(carry, start):
    lw = log_weights(start, chunk)
    return carry, (jax.nn.logsumexp(lw, axis=0), lw.sum(axis=0))

  num_chunks, rest = divmod(num_samples, chunk)
  _, (lse, sums) = jax.lax.scan(body, None, jnp.arange(num_chunks) * chunk)
  if rest:
    lw = log_weights(num_chunks * chunk, rest)
    lse = jnp.concatenate([lse, jax.nn.logsumexp(lw, axis=0)[None]])
    sums = jnp.concatenate([sums, lw.sum(axis=0)[None]])
  return LikelihoodBounds(elbo=sums.sum(axis=0) / num_samples,
                          iwae=jax.nn.logsumexp(lse, axis=0) - math.log(num_samples))
