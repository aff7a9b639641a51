"""Losses against closed forms on small inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import losses


def test_bernoulli_nll_is_binary_cross_entropy():
  logits = jnp.array([[0.0, 2.0, -1.0]])
  x = jnp.array([[1.0, 0.0, 0.3]])
  p = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
  expected = -np.sum(np.array([1.0, 0.0, 0.3]) * np.log(p) + (1 - np.array([1, 0, 0.3])) *
                     np.log(1 - p))
  np.testing.assert_allclose(losses.bernoulli_nll(logits, x), [expected], rtol=1e-6)


def test_bernoulli_nll_is_stable_for_large_logits():
  out = losses.bernoulli_nll(jnp.array([[1e4, -1e4]]), jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(out, [0.0], atol=1e-6)


def test_gaussian_nll_closed_form():
  mean, x, sigma = jnp.zeros((1, 2)), jnp.array([[1.0, -2.0]]), 0.5
  expected = sum(0.5 * (v / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
                 for v in (1.0, -2.0))
  np.testing.assert_allclose(losses.gaussian_nll(mean, x, sigma), [expected], rtol=1e-6)


def test_gaussian_kl_closed_form_and_monte_carlo():
  np.testing.assert_allclose(losses.gaussian_kl(jnp.zeros((1, 3)), jnp.zeros((1, 3))), [0.0])
  # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension.
  np.testing.assert_allclose(losses.gaussian_kl(jnp.ones((1, 4)), jnp.zeros((1, 4))), [2.0])
  # General case against a Monte Carlo estimate of E_q[log q - log p].
  mu, logvar = jnp.array([[0.3, -1.2]]), jnp.array([[-0.5, 0.7]])
  z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.PRNGKey(0), (200_000, 2))
  log_q = -0.5 * (((z - mu) ** 2) / jnp.exp(logvar) + logvar + math.log(2 * math.pi))
  log_p = -0.5 * (z ** 2 + math.log(2 * math.pi))
  mc = float(jnp.mean(jnp.sum(log_q - log_p, -1)))
  assert float(losses.gaussian_kl(mu, logvar)[0]) == pytest.approx(mc, abs=0.01)


def test_gan_losses_closed_forms():
  d_loss, g_ns = losses.GAN_LOSSES["non_saturating"]
  _, g_mm = losses.GAN_LOSSES["minimax"]
  zero = jnp.zeros(4)
  # D(x) = D(G(z)) = 1/2: -log(1/2) - log(1/2).
  assert float(d_loss(zero, zero)) == pytest.approx(2 * math.log(2))
  assert float(g_ns(zero)) == pytest.approx(math.log(2))
  assert float(g_mm(zero)) == pytest.approx(-math.log(2))
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  sig = lambda v: 1 / (1 + np.exp(-np.asarray(v)))  # pylint: disable=unnecessary-lambda-assignment
  expected_d = -np.mean(np.log(sig(real))) - np.mean(np.log(1 - sig(fake)))
  assert float(d_loss(real, fake)) == pytest.approx(expected_d, rel=1e-6)
  assert float(g_ns(fake)) == pytest.approx(-np.mean(np.log(sig(fake))), rel=1e-6)
  assert float(g_mm(fake)) == pytest.approx(np.mean(np.log(1 - sig(fake))), rel=1e-6)


def test_losses_compute_in_float32_from_bfloat16():
  out = losses.bernoulli_nll(jnp.zeros((2, 8), jnp.bfloat16), jnp.ones((2, 8), jnp.bfloat16))
  assert out.dtype == jnp.float32
