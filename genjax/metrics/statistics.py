"""Sample-quality statistics on feature vectors: FID, KID, Inception Score, class balance, PRDC.

Everything here runs on the host in float64 (numpy/scipy); inputs may be jax or numpy arrays of
shape ``[num_samples, dim]``. Feature extraction lives elsewhere: these functions only see the
features (or, for the Inception Score, the class probabilities).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.special

from genjax.errors import ConfigError

ArrayLike = Any  # numpy or jax array
# Pairwise-distance blocks hold at most this many float64 entries (64 MiB).
_BLOCK_ELEMENTS = 1 << 23


def _features(x: ArrayLike, name: str = "features") -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ConfigError(f"{name} must be a [num_samples, dim] array, got shape {x.shape}")
  return x


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
  if a.shape[1] != b.shape[1]:
    raise ConfigError(f"feature dimensions differ: {a.shape[1]} against {b.shape[1]}")


# --- mean and covariance -----------------------------------------------------------------------

def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """Float64 mean ``[d]`` and covariance ``[d, d]`` (``np.cov``, ddof=1) of ``[n, d]`` features."""
  x = _features(features)
  if x.shape[0] < 2:
    raise ConfigError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
  return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


class FeatureStats:
  """Streaming float64 mean and covariance of feature vectors, fed one batch at a time.

  Keeps the count and float64 sums of ``x - c`` and ``(x - c)(x - c)^T``, with the shift ``c``
  the mean of the first batch (shifting leaves the covariance unchanged and avoids cancellation
  when the mean is large against the spread). ``mean_cov()`` then equals
  :func:`feature_statistics` of all the batches together up to float64 rounding.
  """

  def __init__(self):
    self.num_samples = 0
    self._shift: np.ndarray | None = None
    self._sum: np.ndarray | None = None
    self._outer: np.ndarray | None = None

  @property
  def dim(self) -> int | None:
    """Feature dimension, or None before the first non-empty batch."""
    return None if self._shift is None else self._shift.shape[0]

  def update(self, features: ArrayLike) -> FeatureStats:
    """Adds a ``[n, d]`` batch; returns ``self``."""
    x = _features(features)
    if x.shape[0] == 0:
      return self
    if self._shift is None:
      self._shift = x.mean(axis=0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1], x.shape[1]), np.float64)
    elif x.shape[1] != self.dim:
      raise ConfigError(f"feature batch has dimension {x.shape[1]}, earlier batches {self.dim}")
    x = x - self._shift
    self._sum += x.sum(axis=0)
    self._outer += x.T @ x
    self.num_samples += x.shape[0]
    return self

  def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean ``[d]`` and unbiased covariance ``[d, d]`` of everything added so far."""
    n = self.num_samples
    if n < 2:
      raise ConfigError(f"a covariance needs at least 2 samples, got {n}")
    mean = self._sum / n
    cov = (self._outer - n * np.outer(mean, mean)) / (n - 1)
    return self._shift + mean, cov


# --- Frechet Inception Distance ----------------------------------------------------------------

def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     eps: float = 1e-6) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it.

  ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2))``. If the matrix square
  root is not finite, ``eps * I`` is added to both covariances and it is taken again; a complex
  root is accepted (real part) only if its diagonal's imaginary part is within 1e-3 of 0.

  Raises:
    ConfigError: Shapes that do not match.
    ValueError: The square root has a significant imaginary component.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ConfigError(f"frechet_distance needs means [d] and covariances [d, d] of one d, got "
                      f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
  diff = mu1 - mu2
  # sqrtm(A, disp=False) in pytorch-fid differs from sqrtm(A) only by also returning an error
  # estimate (the argument is deprecated in SciPy 1.16).
  covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    offset = np.eye(d) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))} in the matrix square "
                       f"root of sigma1 @ sigma2: the covariances are not positive semi-definite")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(features_a: ArrayLike | FeatureStats, features_b: ArrayLike | FeatureStats, *,
        allow_rank_deficient: bool = False) -> float:
  """Frechet distance between the Gaussians fitted to two feature sets.

  Args:
    features_a: ``[n_a, d]`` features, or a :class:`FeatureStats` that accumulated them.
    features_b: ``[n_b, d]`` likewise.
    allow_rank_deficient: Compute it even with no more samples than dimensions on a side.

  Raises:
    ConfigError: No more than ``d`` samples on a side (unless allowed): ``n`` samples give a
      covariance of rank at most ``n - 1``; or mismatched dimensions.
  """
  stats = []
  for name, f in (("features_a", features_a), ("features_b", features_b)):
    if isinstance(f, FeatureStats):
      stats.append((name, f.num_samples, f.dim, *f.mean_cov()))
    else:
      x = _features(f, name)
      stats.append((name, x.shape[0], x.shape[1], *feature_statistics(x)))
  (name_a, n_a, d, mu_a, sigma_a), (name_b, n_b, d_b, mu_b, sigma_b) = stats
  if d != d_b:
    raise ConfigError(f"feature dimensions differ: {d} against {d_b}")
  n, name = min((n_a, name_a), (n_b, name_b))
  if n <= d and not allow_rank_deficient:  # n samples: a covariance of rank n - 1 at most
    raise ConfigError(f"FID needs more than {d} samples per side for {d}-d features (got {n} in "
                      f"{name}): the covariance is rank-deficient; pass "
                      f"allow_rank_deficient=True to compute it anyway")
  return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


# --- Kernel Inception Distance -----------------------------------------------------------------

def polynomial_mmd2(x: ArrayLike, y: ArrayLike) -> float:
  """Unbiased MMD^2 between two samples with the kernel ``k(u, v) = (u . v / d + 1)^3``.

  ``mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``.
  """
  x, y = _features(x, "x"), _features(y, "y")
  _same_dim(x, y)
  m, n = x.shape[0], y.shape[0]
  if min(m, n) < 2:
    raise ConfigError(f"the unbiased MMD needs at least 2 samples per side, got {m} and {n}")
  d = x.shape[1]
  k_xx = (x @ x.T / d + 1.0) ** 3
  k_yy = (y @ y.T / d + 1.0) ** 3
  k_xy = (x @ y.T / d + 1.0) ** 3
  within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
  within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
  return float(within_x + within_y - 2.0 * k_xy.sum() / (m * n))


def kid_subset_indices(n_a: int, n_b: int, num_subsets: int = 100, subset_size: int = 1000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Row indices of the KID subsets: two int arrays ``[num_subsets, m]``, ``m = min(subset_size,
  n_a, n_b)``.

  One ``np.random.RandomState(seed)`` draws, for each subset in turn, ``m`` distinct indices into
  side a and then ``m`` distinct indices into side b (``rng.choice(n, m, replace=False)``).
  Subsets are independent of each other, so a sample can appear in several. This is the order
  torch-fidelity uses, so with ``subset_size <= n_a, n_b`` its KID for ``rng_seed=seed`` uses the
  same subsets.
  """
  if num_subsets < 1:
    raise ConfigError(f"KID needs num_subsets >= 1, got {num_subsets}")
  m = min(subset_size, n_a, n_b)
  if m < 2:
    raise ConfigError(f"KID needs subsets of at least 2 samples, got min(subset_size={subset_size}"
                      f", n_a={n_a}, n_b={n_b}) = {m}")
  rng = np.random.RandomState(seed)
  idx_a = np.empty((num_subsets, m), np.int64)
  idx_b = np.empty((num_subsets, m), np.int64)
  for i in range(num_subsets):
    idx_a[i] = rng.choice(n_a, m, replace=False)
    idx_b[i] = rng.choice(n_b, m, replace=False)
  return idx_a, idx_b


def kid(features_a: ArrayLike, features_b: ArrayLike, num_subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """Kernel Inception Distance: mean and std (ddof=0) of :func:`polynomial_mmd2` over subsets.

  Subsets are drawn as :func:`kid_subset_indices` describes (``m = min(subset_size, n_a, n_b)``
  rows per side, without replacement within a subset, independently across subsets).
  """
  a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
  _same_dim(a, b)
  idx_a, idx_b = kid_subset_indices(a.shape[0], b.shape[0], num_subsets, subset_size, seed)
  mmds = np.array([polynomial_mmd2(a[ia], b[ib]) for ia, ib in zip(idx_a, idx_b)])
  return float(mmds.mean()), float(mmds.std())


# --- Inception Score ---------------------------------------------------------------------------

def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
  """Inception Score: mean and std (ddof=0) over chunks of ``exp(E_x KL(p(y|x) || p(y)))``.

  ``probs`` is ``[n, num_classes]`` (rows are distributions). Chunk ``i`` is rows
  ``[i n // splits, (i + 1) n // splits)`` in the given order and ``p(y)`` is the chunk's mean
  row, as in the original implementation. torch-fidelity (0.3, 0.4) chunks the same way but
  first shuffles the rows (``samples_shuffle=True``, with
  ``np.random.RandomState(2020).permutation(n)``): this function equals its
  ``isc_features_to_metric`` with ``shuffle=False``, and with the default when given
  ``probs[RandomState(2020).permutation(n)]`` (both tested against torch-fidelity; unshuffled,
  the chunks hold other rows and the score differs).
  """
  p = _features(probs, "probs")
  n = p.shape[0]
  if not 1 <= splits <= n:
    raise ConfigError(f"inception_score needs 1 <= splits <= num_samples, got splits={splits} "
                      f"for {n} samples")
  scores = []
  for i in range(splits):
    part = p[i * n // splits:(i + 1) * n // splits]
    kl = scipy.special.rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def class_balance(real_logits: ArrayLike, fake_logits: ArrayLike) -> tuple[float, list[float]]:
  """How the samples spread over the classifier's classes (mode dropping and imbalance).

  Returns ``KL(q || p)`` in nats and ``q``, where ``q`` is the fraction of the samples the
  classifier assigns to each class (argmax of ``fake_logits``) and ``p`` the same for the real
  examples. The KL is 0 when the samples are spread like the data and ``log(1 / p_c)`` when they
  all fall in class ``c``; a sample in a class no real example gets makes it infinite."""
  r, f = _features(real_logits, "real logits"), _features(fake_logits, "fake logits")
  _same_dim(r, f)
  p, q = (np.bincount(np.argmax(x, axis=1), minlength=x.shape[1]) / x.shape[0] for x in (r, f))
  return float(scipy.special.rel_entr(q, p).sum()), q.tolist()


# --- precision, recall, density, coverage ------------------------------------------------------

def _blocks(num_rows: int, num_cols: int):
  size = max(1, _BLOCK_ELEMENTS // max(num_cols, 1))
  for start in range(0, num_rows, size):
    yield slice(start, min(start + size, num_rows))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
  return np.sqrt(np.maximum(sq, 0.0))


def _knn_radii(x: np.ndarray, k: int, name: str) -> np.ndarray:
  """Distance from each row of ``x`` to its k-th nearest other row."""
  n = x.shape[0]
  if not 1 <= k < n:
    raise ConfigError(f"k-NN radii need 1 <= k < number of {name} samples, got k={k} for {n}")
  radii = np.empty(n, np.float64)
  for rows in _blocks(n, n):
    d = _distances(x[rows], x)
    d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = np.inf  # not its own neighbour
    radii[rows] = np.partition(d, k - 1, axis=1)[:, k - 1]
  return radii


def _real_fake(real: ArrayLike, fake: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  real, fake = _features(real, "real"), _features(fake, "fake")
  _same_dim(real, fake)
  return real, fake


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al. 2019) with Euclidean k-NN manifolds.

  Each feature's radius is the distance to its k-th nearest neighbour in its own set (itself
  excluded). Precision is the fraction of fake features strictly inside (``<``) the radius of
  some real feature; recall the fraction of real features strictly inside the radius of some fake
  feature. The strict comparison is ``prdc``'s: on tied (quantised or duplicated) features a point
  at distance 0 from a ball of radius 0 is outside it.
  """
  real, fake = _real_fake(real, fake)
  real_radii = _knn_radii(real, k, "real")
  fake_radii = _knn_radii(fake, k, "fake")
  fake_inside = np.zeros(fake.shape[0], bool)
  real_inside = np.zeros(real.shape[0], bool)
  for rows in _blocks(real.shape[0], fake.shape[0]):
    d = _distances(real[rows], fake)
    fake_inside |= (d < real_radii[rows, None]).any(axis=0)
    real_inside[rows] = (d < fake_radii[None, :]).any(axis=1)
  return float(fake_inside.mean()), float(real_inside.mean())


def density_coverage(real: ArrayLike, fake: ArrayLike, k: int = 5) -> tuple[float, float]:
  """Density and coverage (Naeem et al. 2020), as the ``prdc`` package computes them.

  With real radii as in :func:`precision_recall`: density is the number of (real ball, fake
  feature) pairs with the fake strictly inside the ball, divided by ``k * num_fake``; coverage
  the fraction of real features whose nearest fake feature is strictly inside their ball.
  """
  real, fake = _real_fake(real, fake)
  real_radii = _knn_radii(real, k, "real")
  inside_count = 0
  covered = np.zeros(real.shape[0], bool)
  for rows in _blocks(real.shape[0], fake.shape[0]):
    d = _distances(real[rows], fake)
    inside_count += int((d < real_radii[rows, None]).sum())
    covered[rows] = d.min(axis=1) < real_radii[rows]
  return inside_count / (k * fake.shape[0]), float(covered.mean())
