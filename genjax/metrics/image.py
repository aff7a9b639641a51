"""Full-reference image metrics on batched NHWC images (pure JAX, jit-friendly).

Each function returns one value per image, ``[B]``. Integer inputs are compared as float32;
float inputs keep their precision (float64 under ``jax_enable_x64``). ``data_range`` is the span
of the value range (1 for [0, 1], 2 for [-1, 1], 255 for uint8).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax.errors import ConfigError

Array = jax.Array


def _pair(a: Array, b: Array) -> tuple[Array, Array]:
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.shape != b.shape or a.ndim != 4:
    raise ConfigError(f"image metrics need two NHWC batches of one shape, got {a.shape} and "
                      f"{b.shape}")
  dtype = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
  return a.astype(dtype), b.astype(dtype)


def l1(a: Array, b: Array) -> Array:
  """Mean absolute error per image."""
  a, b = _pair(a, b)
  return jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))


def l2(a: Array, b: Array) -> Array:
  """Mean squared error per image."""
  a, b = _pair(a, b)
  return jnp.mean(jnp.square(a - b), axis=(1, 2, 3))


def psnr(a: Array, b: Array, data_range: float) -> Array:
  """Peak signal-to-noise ratio in dB per image: ``10 log10(data_range^2 / MSE)`` (inf if equal)."""
  return 10.0 * jnp.log10(data_range ** 2 / l2(a, b))


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  w = np.exp(-0.5 * np.square(x / sigma))
  return w / w.sum()


def _filter_valid(x: Array, window: np.ndarray) -> Array:
  """Separable 'valid' filtering of every channel of NHWC ``x`` with the 1-D ``window``."""
  c = x.shape[-1]
  w = jnp.asarray(window, x.dtype)
  for kernel in (w[:, None, None, None], w[None, :, None, None]):
    x = jax.lax.conv_general_dilated(
        x, jnp.broadcast_to(kernel, (*kernel.shape[:3], c)), (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST)
  return x


def ssim(a: Array, b: Array, data_range: float, *, sigma: float = 1.5, win_size: int = 11,
         k1: float = 0.01, k2: float = 0.03) -> Array:
  """Mean structural similarity per image (Wang et al. 2004) with a Gaussian window.

  Local means, variances and covariance are Gaussian-weighted (population, not sample,
  statistics) over ``win_size`` x ``win_size`` windows; the SSIM map is averaged over the
  positions where the window fits inside the image and over channels. This equals
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1)``.

  Raises:
    ConfigError: Images smaller than the window, or an even window size.
  """
  a, b = _pair(a, b)
  if win_size % 2 != 1:
    raise ConfigError(f"ssim win_size must be odd, got {win_size}")
  if min(a.shape[1], a.shape[2]) < win_size:
    raise ConfigError(f"ssim needs images of at least {win_size}x{win_size}, got "
                      f"{a.shape[1]}x{a.shape[2]}")
  n = a.shape[0]
  stats = _filter_valid(jnp.concatenate([a, b, a * a, b * b, a * b]),
                        _gaussian_window(win_size, sigma))
  mu_a, mu_b, aa, bb, ab = (stats[i * n:(i + 1) * n] for i in range(5))
  var_a = aa - mu_a * mu_a
  var_b = bb - mu_b * mu_b
  cov = ab - mu_a * mu_b
  c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2) /
              ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)))
  return jnp.mean(ssim_map, axis=(1, 2, 3))
