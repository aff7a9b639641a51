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


# --- the GAN zoo's losses and penalties ---------------------------------------------------------

_REAL, _FAKE = np.array([2.0, -1.0, 0.5]), np.array([0.5, -3.0, 1.5])


def _sig(v):
  return 1 / (1 + np.exp(-np.asarray(v)))


# (d_loss(real, fake), g_loss(fake)) in numpy, straight from the papers' definitions.
_CLOSED_FORMS = {
    "non_saturating": (lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
                       lambda f: -np.mean(np.log(_sig(f)))),
    "minimax": (lambda r, f: -np.mean(np.log(_sig(r))) - np.mean(np.log(1 - _sig(f))),
                lambda f: np.mean(np.log(1 - _sig(f)))),
    "least_squares": (lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                      lambda f: 0.5 * np.mean((f - 1) ** 2)),
    "wasserstein": (lambda r, f: np.mean(f) - np.mean(r), lambda f: -np.mean(f)),
    "hinge": (lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
              lambda f: -np.mean(f)),
}


@pytest.mark.parametrize("name", sorted(losses.GAN_LOSSES))
def test_every_gan_loss_matches_its_closed_form(name):
  assert set(losses.GAN_LOSSES) == set(_CLOSED_FORMS)
  d_loss, g_loss = losses.GAN_LOSSES[name]
  d_ref, g_ref = _CLOSED_FORMS[name]
  assert float(d_loss(jnp.asarray(_REAL), jnp.asarray(_FAKE))) == pytest.approx(
      d_ref(_REAL, _FAKE), rel=1e-6)
  assert float(g_loss(jnp.asarray(_FAKE))) == pytest.approx(g_ref(_FAKE), rel=1e-6)
  out = d_loss(jnp.asarray(_REAL, jnp.bfloat16), jnp.asarray(_FAKE, jnp.bfloat16))
  assert out.dtype == jnp.float32


def test_hinge_and_least_squares_optima():
  d_hinge, _ = losses.GAN_LOSSES["hinge"]
  # Margins satisfied: zero loss; LSGAN's D optimum at D(x)=1, D(G(z))=0.
  assert float(d_hinge(jnp.array([1.0, 3.0]), jnp.array([-1.0, -2.0]))) == 0.0
  d_ls, g_ls = losses.GAN_LOSSES["least_squares"]
  assert float(d_ls(jnp.ones(3), jnp.zeros(3))) == 0.0 and float(g_ls(jnp.ones(3))) == 0.0


def _images(seed, n=3, shape=(4, 4, 2)):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape)), jnp.float32)


def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared():
  w = _images(0, 1)[0]
  d_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))  # pylint: disable=unnecessary-lambda-assignment
  real, fake, u = _images(1), _images(2), jnp.array([0.1, 0.5, 0.9])
  expected = (np.linalg.norm(np.asarray(w)) - 1) ** 2
  assert float(losses.gradient_penalty(d_fn, d_fn, real, fake, u)) == pytest.approx(expected,
                                                                                   rel=1e-5)


def test_gradient_penalty_evaluates_on_the_interpolates():
  # D(x) = |x|^2 / 2 has gradient x: the penalty is E(|u x + (1 - u) x~| - 1)^2.
  d_fn = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))  # pylint: disable=unnecessary-lambda-assignment
  real, fake, u = _images(3), _images(4), jnp.array([0.0, 0.3, 1.0])
  r, f, un = np.asarray(real), np.asarray(fake), np.asarray(u)[:, None, None, None]
  x_hat = (un * r + (1 - un) * f).reshape(3, -1)
  expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
  assert float(losses.gradient_penalty(d_fn, d_fn, real, fake, u)) == pytest.approx(expected,
                                                                                   rel=1e-5)


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_r1_r2_penalties_are_half_the_squared_gradient_norm_on_real_or_generated_data(name):
  d_fn = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))  # pylint: disable=unnecessary-lambda-assignment
  penalty = losses.PENALTIES[name]
  real, fake = _images(5), _images(6)
  on = real if name == "r1" else fake
  expected = 0.5 * np.mean(np.sum(np.asarray(on).reshape(3, -1) ** 2, axis=1))
  out = penalty(d_fn, d_fn, real, fake, jnp.zeros(3))
  assert float(out) == pytest.approx(expected, rel=1e-5)
  # It does not look at the other batch.
  args = (real, fake * 7) if name == "r1" else (real * 7, fake)
  assert float(penalty(d_fn, d_fn, *args, jnp.ones(3))) == pytest.approx(float(out), rel=1e-6)
  if name == "r2":  # no gradient reaches the generator through the penalty
    grad = jax.grad(lambda f: penalty(d_fn, d_fn, real, f, jnp.zeros(3)))(fake)
    assert float(jnp.abs(grad).max()) == 0.0


def test_penalties_judge_each_batch_under_its_own_conditioning():
  # d_real and d_fake stand for a conditional discriminator under the real labels and under the
  # fakes' own: R1 and the gradient penalty's interpolates are judged by d_real, R2 by d_fake.
  d_real = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))  # pylint: disable=unnecessary-lambda-assignment
  d_fake = lambda x: 1.5 * jnp.sum(x ** 2, axis=(1, 2, 3))  # pylint: disable=unnecessary-lambda-assignment
  real, fake, u = _images(7), _images(8), jnp.array([0.2, 0.5, 0.7])
  for name, judge in (("gp", d_real), ("r1", d_real), ("r2", d_fake)):
    penalty = losses.PENALTIES[name]
    other = d_fake if judge is d_real else d_real
    out = float(penalty(d_real, d_fake, real, fake, u))
    assert out == pytest.approx(float(penalty(judge, judge, real, fake, u)), rel=1e-6), name
    assert out != pytest.approx(float(penalty(other, other, real, fake, u)), rel=0.1), name


def test_weight_clipping():
  params = {"a": jnp.array([-1.0, 0.005, 0.3]), "b": {"c": jnp.array([[0.02, -0.001]])}}
  out = losses.clip_weights(params, 0.01)
  np.testing.assert_allclose(out["a"], [-0.01, 0.005, 0.01])
  np.testing.assert_allclose(out["b"]["c"], [[0.01, -0.001]])


def test_cross_entropy_and_the_infogan_bounds():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  labels = jnp.array([0, 2])
  p = np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum()
  expected = -(np.log(p[0]) + np.log(1 / 3)) / 2
  assert float(losses.cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-6)
  # Uninformative Q: the bound is 0; a Q that knows the code: log K.
  assert float(losses.categorical_mi_bound(jnp.zeros((4, 10)), jnp.arange(4))) == pytest.approx(
      0.0, abs=1e-6)
  sure = 50.0 * jax.nn.one_hot(jnp.arange(4), 10)
  assert float(losses.categorical_mi_bound(sure, jnp.arange(4))) == pytest.approx(
      math.log(10), abs=1e-5)
  # Continuous codes U(-1, 1), unit-variance Gaussian Q: log 2 + E log N(c | m, 1) per code.
  codes, mean = jnp.array([[0.5, -0.2], [0.1, 0.9]]), jnp.array([[0.3, -0.2], [0.1, 0.4]])
  c, m = np.asarray(codes), np.asarray(mean)
  expected = np.sum(np.mean(-0.5 * (c - m) ** 2 - 0.5 * math.log(2 * math.pi), 0) + math.log(2))
  assert float(losses.continuous_mi_bound(mean, codes)) == pytest.approx(expected, rel=1e-6)


def test_feature_matching_closed_form():
  real = jnp.array([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
  fake = jnp.array([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1)
  assert float(losses.feature_matching(real, fake)) == pytest.approx((1 + 4) / 2)
  assert float(losses.feature_matching(real, real[::-1])) == 0.0
  assert float(losses.feature_matching(real, fake, "l1")) == pytest.approx((1 + 2) / 2)
