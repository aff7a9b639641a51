"""Evaluation metrics against peer packages and closed forms.

Peers, called in the tests: pytorch-fid (FID), torch-fidelity (KID, Inception Score), ``prdc``
(precision/recall/density/coverage), scikit-image (SSIM, PSNR) and scikit-learn (AUROC, average
precision); each test skips, with the reason, when its package is not installed.
"""

import functools
import importlib.util
import math
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

from genjax import metrics
from genjax.errors import ConfigError

RTOL = 1e-6


def _rng(seed=0):
  return np.random.default_rng(seed)


def _features(rng, n, d, shift=0.0):
  """Non-Gaussian, correlated features (like post-ReLU activations)."""
  mix = rng.normal(size=(d, d)) / math.sqrt(d)
  return np.exp(0.5 * rng.normal(size=(n, d)) @ mix) + shift


# What pytorch-fid 0.3.0 and torch-fidelity 0.3.0 take from torchvision when their modules are
# imported: modules, and the names they import or subclass.
_TORCHVISION_PLACEHOLDER = {
    "torchvision": (),
    "torchvision.datasets": ("CIFAR10", "STL10"),
    "torchvision.models": (),
    "torchvision.models.inception": ("InceptionA", "InceptionC", "InceptionE"),
    "torchvision.transforms": (),
}


def _reference_module(name):
  """Module ``name`` of pytorch-fid or torch-fidelity, imported beside a placeholder torchvision.

  Both packages import torchvision at module level for their image pipelines and Inception
  networks, which the metric functions called here never use; and the torchvision that pip
  installs with them (PyPI's 0.28, a CUDA build) does not load beside the CPU torch of the [test]
  extras ("operator torchvision::nms does not exist"). Neither the placeholder nor the package
  stays in sys.modules.
  """
  package = name.partition(".")[0]
  if importlib.util.find_spec(package) is None:
    pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
  pytest.importorskip("torch")  # imported here, never beside the placeholder
  swapped = lambda key: key.partition(".")[0] in ("torchvision", package)  # pylint: disable=unnecessary-lambda-assignment
  saved = {key: module for key, module in sys.modules.items() if swapped(key)}
  try:
    for path, names in _TORCHVISION_PLACEHOLDER.items():
      module = sys.modules[path] = types.ModuleType(path)
      parent, _, child = path.rpartition(".")
      if parent:
        setattr(sys.modules[parent], child, module)
      for attribute in names:
        setattr(module, attribute, type(attribute, (), {}))
    return importlib.import_module(name)
  finally:
    for key in [key for key in sys.modules if swapped(key)]:
      del sys.modules[key]
    sys.modules.update(saved)


# --- feature statistics ------------------------------------------------------------------------

def test_feature_stats_streaming_equals_one_shot():
  rng = _rng(1)
  x = _features(rng, 1000, 48, shift=100.0)  # large mean: the naive sums would lose digits
  stats = metrics.FeatureStats()
  for batch in np.split(x, [0, 7, 300, 301, 650]):  # includes an empty batch
    stats.update(jnp.asarray(batch, jnp.float32) if len(batch) == 7 else batch)
  x[:7] = np.asarray(jnp.asarray(x[:7], jnp.float32), np.float64)  # the jax batch is float32
  mu, sigma = metrics.feature_statistics(x)
  s_mu, s_sigma = stats.mean_cov()
  assert stats.num_samples == 1000 and stats.dim == 48
  assert mu.dtype == sigma.dtype == s_sigma.dtype == np.float64
  np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-12)
  np.testing.assert_allclose(s_mu, mu, rtol=1e-10)
  np.testing.assert_allclose(s_sigma, sigma, rtol=1e-10, atol=1e-10 * np.abs(sigma).max())
  with pytest.raises(ConfigError, match="dimension 3"):
    stats.update(np.zeros((2, 3)))
  with pytest.raises(ConfigError, match="at least 2 samples"):
    metrics.FeatureStats().update(x[:1]).mean_cov()


# --- FID ---------------------------------------------------------------------------------------

# pytorch-fid 0.3 calls scipy.linalg.sqrtm(..., disp=False), deprecated in SciPy 1.16.
_SQRTM_DISP = pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")


def _pytorch_fid(a, b):
  """pytorch-fid's FID of two feature sets: the mean and covariance of its
  calculate_activation_statistics (np.mean, np.cov), then its calculate_frechet_distance."""
  fid_score = _reference_module("pytorch_fid.fid_score")
  (mu1, sigma1), (mu2, sigma2) = [(np.mean(x, axis=0), np.cov(x, rowvar=False)) for x in (a, b)]
  return fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2)


@_SQRTM_DISP
def test_fid_matches_pytorch_fid():
  rng = _rng(2)
  a, b = _features(rng, 400, 32), _features(rng, 300, 32, shift=0.2)
  expected = _pytorch_fid(a, b)
  assert expected > 0.1
  assert metrics.fid(a, b) == pytest.approx(expected, rel=RTOL)
  a32 = np.asarray(jnp.asarray(a), np.float64)  # what a (float32) jax array holds
  assert metrics.fid(jnp.asarray(a), b) == pytest.approx(_pytorch_fid(a32, b), rel=RTOL)
  streamed = [metrics.FeatureStats().update(x[:100]).update(x[100:]) for x in (a, b)]
  assert metrics.fid(*streamed) == pytest.approx(expected, rel=1e-9)
  # Rank-deficient covariances (40 samples of 64-d features), where allowed.
  rng = _rng(4)
  a, b = _features(rng, 40, 64), _features(rng, 100, 64)
  assert metrics.fid(a, b, allow_rank_deficient=True) == pytest.approx(_pytorch_fid(a, b),
                                                                       rel=RTOL)


def test_frechet_distance_closed_forms():
  rng = _rng(3)
  x = _features(rng, 200, 16)
  mu, sigma = metrics.feature_statistics(x)
  assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
  # 1-D: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2); scalars are accepted.
  m1, s1, m2, s2 = 0.3, 2.0, -1.1, 0.5
  expected = (m1 - m2) ** 2 + s1 + s2 - 2 * math.sqrt(s1 * s2)
  assert metrics.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-12)
  # Diagonal covariances: the 1-D formula summed over dimensions.
  m1, m2 = rng.normal(size=5), rng.normal(size=5)
  s1, s2 = rng.uniform(0.1, 2, size=5), rng.uniform(0.1, 2, size=5)
  expected = np.sum((m1 - m2) ** 2 + s1 + s2 - 2 * np.sqrt(s1 * s2))
  assert metrics.frechet_distance(m1, np.diag(s1), m2, np.diag(s2)) == pytest.approx(
      expected, rel=1e-12)


def test_frechet_distance_retries_with_eps_when_sqrtm_is_not_finite(monkeypatch):
  rng = _rng(16)
  mu1, sigma1 = metrics.feature_statistics(_features(rng, 100, 8))
  mu2, sigma2 = metrics.feature_statistics(_features(rng, 100, 8, shift=0.5))
  real_sqrtm = scipy.linalg.sqrtm
  calls = []

  def flaky_sqrtm(a, *args, **kwargs):
    calls.append(a)
    return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a, *args, **kwargs)

  monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
  got = metrics.frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-3)
  monkeypatch.undo()
  shift = 1e-3 * np.eye(8)
  np.testing.assert_allclose(calls[1], (sigma1 + shift) @ (sigma2 + shift), rtol=1e-12)
  expected = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) -
              2 * np.trace(real_sqrtm((sigma1 + shift) @ (sigma2 + shift)).real))
  assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_rejects_imaginary_square_root():
  with pytest.raises(ValueError, match="Imaginary component"):
    metrics.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))
  with pytest.raises(ConfigError, match="covariances"):
    metrics.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_fid_refuses_too_few_samples_unless_allowed():
  rng = _rng(4)
  a, b = _features(rng, 40, 64), _features(rng, 100, 64)
  with pytest.raises(ConfigError) as info:
    metrics.fid(a, b)
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith("FID needs more than 64 samples per side for 64-d features (got 40")
  assert "allow_rank_deficient=True" in message
  # n samples give a covariance of rank n - 1 at most: n == d is rank-deficient too
  with pytest.raises(ConfigError, match="got 64 in features_a"):
    metrics.fid(_features(rng, 64, 64), b)
  assert np.isfinite(metrics.fid(_features(rng, 65, 64), b))
  with pytest.raises(ConfigError, match="got 40"):
    metrics.fid(metrics.FeatureStats().update(b), metrics.FeatureStats().update(a))
  with pytest.raises(ConfigError, match="dimensions differ"):
    metrics.fid(a, b[:, :10])


# --- KID ---------------------------------------------------------------------------------------

def test_kid_matches_torch_fidelity():
  metric_kid = _reference_module("torch_fidelity.metric_kid")
  import torch  # pylint: disable=g-import-not-at-top
  rng = _rng(5)
  a, b = _features(rng, 300, 64), _features(rng, 250, 64, shift=0.1)
  # Its kernel (cubic polynomial, gamma = 1/d, coef0 = 1) and unbiased MMD^2 on one subset.
  assert metrics.polynomial_mmd2(a[:100], b[:100]) == pytest.approx(
      metric_kid.polynomial_mmd(a[:100], b[:100], degree=3, gamma=None, coef0=1), rel=RTOL)
  # The same subsets from the same seed; 250 is the smaller side, to which genjax caps 1000.
  for num_subsets, subset_size, seed, ours in ((20, 100, 7, 100), (3, 250, 0, 1000)):
    expected = metric_kid.kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=num_subsets,
        kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    mean, std = metrics.kid(a, b, num_subsets=num_subsets, subset_size=ours, seed=seed)
    assert mean == pytest.approx(expected[metric_kid.KEY_METRIC_KID_MEAN], rel=RTOL)
    assert std == pytest.approx(expected[metric_kid.KEY_METRIC_KID_STD], rel=RTOL)


def test_kid_subsets_are_distinct_rows_capped_by_the_smaller_side():
  idx_a, idx_b = metrics.kid_subset_indices(300, 250, 20, 100, 7)
  assert idx_a.shape == idx_b.shape == (20, 100)
  assert all(len(set(row)) == 100 for row in (*idx_a, *idx_b))
  assert idx_a.max() < 300 and idx_b.max() < 250
  idx_a, idx_b = metrics.kid_subset_indices(300, 250, 3, 1000, 7)
  assert idx_a.shape == idx_b.shape == (3, 250)
  assert all(sorted(row) == list(range(250)) for row in idx_b)  # each a permutation of side b


def test_kid_of_identical_distributions_is_near_zero():
  rng = _rng(6)
  a, b = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
  same, same_std = metrics.kid(a, b, num_subsets=20, subset_size=500)
  shifted, _ = metrics.kid(a, b + 0.5, num_subsets=20, subset_size=500)
  assert abs(same) < 3 * same_std
  assert abs(same) < 0.02 * shifted


# --- Inception Score ---------------------------------------------------------------------------

def test_inception_score_closed_forms():
  uniform = np.full((100, 10), 0.1)
  mean, std = metrics.inception_score(uniform, splits=5)
  assert mean == pytest.approx(1.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
  one_hot = np.eye(10)[np.arange(200) % 10]  # each split uses every class equally
  mean, std = metrics.inception_score(one_hot, splits=4)
  assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
  with pytest.raises(ConfigError, match="splits"):
    metrics.inception_score(uniform[:5], splits=10)


def test_class_balance_closed_forms():
  real = np.eye(4)[np.array([0, 1, 2, 3] * 25)]  # the classes in equal shares
  kl, fractions = metrics.class_balance(real, real[::-1] * 3.0)  # logits: only the argmax counts
  assert kl == pytest.approx(0.0, abs=1e-15) and fractions == [0.25] * 4
  kl, fractions = metrics.class_balance(real, np.eye(4)[[2] * 10])  # one mode: log(1 / p_2)
  assert kl == pytest.approx(math.log(4), rel=1e-12) and fractions == [0, 0, 1, 0]
  skewed = np.eye(4)[np.array([0] * 50 + [1] * 30 + [2] * 20)]  # class 3 dropped
  kl, _ = metrics.class_balance(real, skewed)
  assert kl == pytest.approx(0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.8),
                             rel=1e-12)
  assert metrics.class_balance(skewed, np.eye(4)[[3]])[0] == math.inf  # a class the data lacks
  with pytest.raises(ConfigError, match="dimensions differ"):
    metrics.class_balance(real, np.eye(3))


def test_inception_score_matches_torch_fidelity():
  metric_isc = _reference_module("torch_fidelity.metric_isc")
  import torch  # pylint: disable=g-import-not-at-top
  logits = 2.0 * _rng(7).normal(size=(1003, 10))  # torch-fidelity takes logits
  probs = scipy.special.softmax(logits, axis=1)
  key_mean, key_std = metric_isc.KEY_METRIC_ISC_MEAN, metric_isc.KEY_METRIC_ISC_STD
  for splits in (3, 10):  # 1003 rows: chunks of unequal sizes
    expected = metric_isc.isc_features_to_metric(torch.from_numpy(logits), splits=splits,
                                                 shuffle=False)
    mean, std = metrics.inception_score(probs, splits=splits)
    assert mean == pytest.approx(expected[key_mean], rel=RTOL)
    assert std == pytest.approx(expected[key_std], rel=RTOL)
  # Its default shuffles the rows first, with RandomState(2020): our score of the shuffled rows.
  expected = metric_isc.isc_features_to_metric(torch.from_numpy(logits), splits=10)
  shuffled = probs[np.random.RandomState(2020).permutation(len(probs))]
  assert metrics.inception_score(shuffled, splits=10) == pytest.approx(
      (expected[key_mean], expected[key_std]), rel=RTOL)
  assert metrics.inception_score(probs, splits=10)[0] != pytest.approx(expected[key_mean],
                                                                       rel=RTOL)


# --- precision, recall, density, coverage ------------------------------------------------------

def test_prdc_matches_prdc_package(monkeypatch):
  prdc = pytest.importorskip("prdc")
  monkeypatch.setattr(metrics.statistics, "_BLOCK_ELEMENTS", 20_000)  # several blocks
  rng = _rng(8)
  real, fake = rng.normal(size=(600, 24)), rng.normal(size=(450, 24)) * 1.2 + 0.3
  for k in (3, 5):
    expected = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    precision, recall = metrics.precision_recall(real, fake, k=k)
    density, coverage = metrics.density_coverage(real, fake, k=k)
    assert precision == pytest.approx(expected["precision"], rel=RTOL)
    assert recall == pytest.approx(expected["recall"], rel=RTOL)
    assert density == pytest.approx(expected["density"], rel=RTOL)
    assert coverage == pytest.approx(expected["coverage"], rel=RTOL)
    assert 0.1 < precision < 0.99 and 0.1 < recall < 0.99 and 0.1 < coverage < 0.99


def test_prdc_with_tied_features_matches_prdc_package():
  # Quantised features: many points coincide, so many k-NN radii are 0 and distances equal radii.
  # A ball of radius 0 holds nothing (prdc's strict '<'); with '<=' precision was 1.0 here.
  prdc = pytest.importorskip("prdc")
  rng = _rng(10)
  real = rng.integers(0, 3, size=(300, 2)).astype(np.float64)
  fake = rng.integers(0, 3, size=(200, 2)).astype(np.float64)
  for k in (3, 5):
    expected = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    got = dict(zip(("precision", "recall"), metrics.precision_recall(real, fake, k=k)))
    got.update(zip(("density", "coverage"), metrics.density_coverage(real, fake, k=k)))
    for name, value in got.items():
      assert value == pytest.approx(expected[name], abs=1e-12), name
    assert got["precision"] < 0.5 and got["recall"] < 0.5


def test_prdc_of_identical_sets():
  x = _rng(9).normal(size=(200, 8))
  assert metrics.precision_recall(x, x) == (1.0, 1.0)
  assert metrics.density_coverage(x, x)[1] == 1.0
  with pytest.raises(ConfigError, match="k=5 for 5"):
    metrics.density_coverage(x[:5], x, k=5)


# --- image metrics -----------------------------------------------------------------------------

def _image_pairs(rng):
  a01 = rng.uniform(size=(3, 33, 27, 3))
  b01 = np.clip(a01 + 0.15 * rng.normal(size=a01.shape), 0, 1)
  a_pm = rng.uniform(-1, 1, size=(2, 16, 20, 1))
  b_pm = np.clip(0.7 * a_pm + 0.2 * rng.normal(size=a_pm.shape), -1, 1)
  return [(a01, b01, 1.0), (a_pm, b_pm, 2.0)]


def _skimage_ssim(a, b, data_range):
  from skimage.metrics import structural_similarity  # pylint: disable=g-import-not-at-top
  return np.array([structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=data_range,
                                         channel_axis=-1) for x, y in zip(a, b)])


def test_ssim_and_psnr_match_scikit_image():
  pytest.importorskip("skimage")
  from skimage.metrics import peak_signal_noise_ratio  # pylint: disable=g-import-not-at-top
  for a, b, data_range in _image_pairs(_rng(10)):
    expected_ssim = _skimage_ssim(a, b, data_range)
    expected_psnr = np.array([peak_signal_noise_ratio(x, y, data_range=data_range)
                              for x, y in zip(a, b)])
    with jax.enable_x64(True):
      got = metrics.ssim(jnp.asarray(a), jnp.asarray(b), data_range)
      assert got.dtype == jnp.float64
      np.testing.assert_allclose(got, expected_ssim, rtol=1e-10)
      np.testing.assert_allclose(metrics.psnr(jnp.asarray(a), jnp.asarray(b), data_range),
                                 expected_psnr, rtol=1e-10)
    # float32 (the default): cancellation in E[x^2] - E[x]^2 costs a few ulps.
    ssim_fn = jax.jit(functools.partial(metrics.ssim, data_range=data_range))
    np.testing.assert_allclose(ssim_fn(a, b), expected_ssim, rtol=3e-6)
    np.testing.assert_allclose(metrics.psnr(a, b, data_range), expected_psnr, rtol=RTOL)


def test_ssim_identity_l1_l2_and_errors():
  a, b, _ = _image_pairs(_rng(11))[0]
  np.testing.assert_allclose(metrics.ssim(a, a, 1.0), np.ones(3), rtol=1e-6)
  assert np.all(np.isinf(metrics.psnr(a, a, 1.0)))
  np.testing.assert_allclose(metrics.l1(a, b), np.abs(a - b).mean((1, 2, 3)), rtol=RTOL)
  np.testing.assert_allclose(metrics.l2(a, b), ((a - b) ** 2).mean((1, 2, 3)), rtol=RTOL)
  u8 = (a * 255).astype(np.uint8)
  assert metrics.l1(u8, u8[::-1]).dtype == jnp.float32
  with pytest.raises(ConfigError, match="at least 11x11"):
    metrics.ssim(a[:, :10], b[:, :10], 1.0)
  with pytest.raises(ConfigError, match="one shape"):
    metrics.l2(a, b[:2])


# --- anomaly detection -------------------------------------------------------------------------

def test_auroc_auprc_match_scikit_learn_with_ties():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = _rng(12)
  cases = []
  labels = rng.integers(0, 2, size=500)
  cases.append((np.round(rng.normal(size=500) + labels, 1), labels))  # many ties
  cases.append((rng.normal(size=300), rng.integers(0, 2, size=300)))  # no ties
  cases.append((rng.integers(0, 3, size=50).astype(float), rng.integers(0, 2, size=50)))
  cases.append((np.array([0.1, 0.1, 0.1, 0.1]), np.array([0, 1, 0, 1])))  # all tied
  cases.append((np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])))  # perfect
  for scores, labels in cases:
    assert metrics.auroc(scores, labels) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores), rel=RTOL)
    assert metrics.auprc(jnp.asarray(scores), labels) == pytest.approx(
        sklearn_metrics.average_precision_score(labels, scores), rel=RTOL)
  assert metrics.auroc([0.1, 0.1, 0.1, 0.1], [0, 1, 0, 1]) == 0.5
  with pytest.raises(ConfigError, match="both normal and anomalous"):
    metrics.auroc([0.1, 0.2], [1, 1])
  with pytest.raises(ConfigError, match="0 \\(normal\\) or 1"):
    metrics.auprc([0.1, 0.2], [0, 2])


# --- likelihood bounds -------------------------------------------------------------------------

def _linear_gaussian(rng, batch=32, latent=3, data=6, noise=0.5):
  """z ~ N(0, I), x | z ~ N(W z + c, noise^2 I), with W's columns orthogonal.

  Then p(x) = N(c, W W^T + noise^2 I) and the posterior is a diagonal Gaussian.
  """
  q, _ = np.linalg.qr(rng.normal(size=(data, latent)))
  scales = np.array([2.0, 1.0, 0.5])
  w, c = q * scales, rng.normal(size=data)
  x = rng.normal(size=(batch, latent)) @ w.T + c + noise * rng.normal(size=(batch, data))
  log_px = scipy.stats.multivariate_normal(c, w @ w.T + noise ** 2 * np.eye(data)).logpdf(x)
  post_var = 1.0 / (1.0 + scales ** 2 / noise ** 2)
  post_mu = (x - c) @ w / noise ** 2 * post_var

  def log_likelihood(x, z):
    mean = z @ jnp.asarray(w.T, jnp.float32) + jnp.asarray(c, jnp.float32)
    return metrics.gaussian_log_density(x, mean, 2 * math.log(noise))

  def encode(_, mu_shift=0.0, var_scale=1.0):
    mu = post_mu + mu_shift * np.sqrt(post_var)
    logvar = np.broadcast_to(np.log(post_var * var_scale), mu.shape)
    return jnp.asarray(mu, jnp.float32), jnp.asarray(logvar, jnp.float32)

  return jnp.asarray(x, jnp.float32), log_px, encode, log_likelihood


def test_elbo_is_exact_with_the_true_posterior():
  x, log_px, encode, log_likelihood = _linear_gaussian(_rng(13))
  bounds = metrics.estimate_log_likelihood(jax.random.PRNGKey(0), x, encode, log_likelihood,
                                           num_samples=64, chunk_size=16)
  np.testing.assert_allclose(bounds.elbo, log_px, rtol=1e-5)
  np.testing.assert_allclose(bounds.iwae, log_px, rtol=1e-5)


def test_iwae_bound_tightens_towards_log_px():
  x, log_px, encode, log_likelihood = _linear_gaussian(_rng(14))
  bad_q = functools.partial(encode, mu_shift=1.5, var_scale=2.5)  # shifted and too wide
  estimate = jax.jit(metrics.estimate_log_likelihood, static_argnums=(2, 3),
                     static_argnames=("num_samples", "chunk_size"))
  key = jax.random.PRNGKey(1)
  # ELBO <= IWAE_10 <= IWAE_100 <= log p(x) holds in expectation: average the gaps over 32
  # independent replicates of each example (the noise differs per row of the batch).
  reps = 32

  def replicated_q(_):
    return tuple(jnp.tile(v, (reps, 1)) for v in bad_q(None))

  gaps = {}
  for k in (1, 10, 100):
    bounds = estimate(key, jnp.tile(x, (reps, 1)), replicated_q, log_likelihood, num_samples=k,
                      chunk_size=32)
    gaps[k] = np.mean(np.tile(log_px, reps) - np.asarray(bounds.iwae))
    if k == 1:
      np.testing.assert_allclose(bounds.iwae, bounds.elbo, rtol=1e-6)  # IWAE_1 is the ELBO
  assert gaps[1] > 1.0  # a visibly loose ELBO, tightened by IWAE_k from below
  assert gaps[1] > gaps[10] > gaps[100] > 0
  # One draw with k=5000: ELBO <= IWAE on the same samples (Jensen), IWAE ~ log p(x).
  large = estimate(key, x, bad_q, log_likelihood, num_samples=5000, chunk_size=512)
  gap = log_px - np.asarray(large.iwae)
  assert np.all(large.elbo <= large.iwae)
  assert np.all(np.abs(gap) < 0.15) and abs(gap.mean()) < 0.03
  # The draws do not depend on the chunking.
  unchunked = estimate(key, x, bad_q, log_likelihood, num_samples=5000)
  np.testing.assert_allclose(unchunked.iwae, large.iwae, rtol=1e-5)
  np.testing.assert_allclose(unchunked.elbo, large.elbo, rtol=1e-5)


def test_likelihood_helpers_closed_forms():
  rng = _rng(15)
  x, mu, logvar = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
  expected = scipy.stats.norm(mu, np.exp(0.5 * logvar)).logpdf(x).sum(-1)
  np.testing.assert_allclose(metrics.gaussian_log_density(x, mu, logvar), expected, rtol=1e-5)
  z = rng.normal(size=(7, 4, 5))
  log_px_z = rng.normal(size=(7, 4))
  lw = metrics.log_importance_weights(log_px_z, z, mu, logvar)
  expected = (log_px_z + scipy.stats.norm().logpdf(z).sum(-1) -
              scipy.stats.norm(mu, np.exp(0.5 * logvar)).logpdf(z).sum(-1))
  np.testing.assert_allclose(lw, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics.elbo(lw), np.mean(expected, 0), rtol=1e-5)
  np.testing.assert_allclose(metrics.iwae_bound(lw),
                             scipy.special.logsumexp(expected, 0) - math.log(7), rtol=1e-5)
  assert metrics.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
