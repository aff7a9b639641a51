"""DiffAugment transforms, the SGAN labelled subset and the Hungarian cluster accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax.data import augment
from genjax.errors import DataError
from genjax.metrics import cluster_accuracy


def test_translate_moves_images_by_their_shifts_with_zero_fill():
  x = np.zeros((2, 8, 8, 1), np.float32)
  x[:, 3, 4] = 1.0
  x[:, 0, 0] = 2.0
  out = np.asarray(augment.translate(jnp.asarray(x), jnp.array([[1, -2], [-1, 3]])))
  assert out[0, 4, 2, 0] == 1.0 and out[1, 2, 7, 0] == 1.0
  # The corner pixel (value 2) leaves the frame in both; zeros fill in.
  assert out[0].sum() == 1.0 and out[1].sum() == 1.0


def test_translation_shifts_are_bounded_by_an_eighth_of_the_size():
  x = jnp.zeros((64, 16, 16, 1)).at[:, 8, 8].set(1.0)
  out = np.asarray(augment.translation(x, jax.random.PRNGKey(0)))
  ys, xs = np.nonzero(out[..., 0])[1:]
  assert out.sum() == 64  # nothing falls off a 16px frame with shifts of at most 2
  assert set(ys - 8) <= {-2, -1, 0, 1, 2} and set(xs - 8) <= {-2, -1, 0, 1, 2}
  assert len(set(zip(ys, xs))) > 5  # shifts differ between examples


def test_cutout_zeroes_one_half_size_square_per_image():
  x = jnp.ones((32, 16, 16, 3))
  out = np.asarray(augment.cutout(x, jax.random.PRNGKey(1)))
  zeros = (out[..., 0] == 0)
  assert np.all(zeros.sum((1, 2)) <= 64) and np.all(zeros.sum((1, 2)) >= 16)
  for z in zeros:  # one axis-aligned rectangle of zeros
    rows, cols = np.nonzero(z.any(1))[0], np.nonzero(z.any(0))[0]
    assert z[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
  mask = np.asarray(augment.cutout_mask((1, 8, 8, 1), jnp.array([[4, 4]]), (4, 4)))[0, ..., 0]
  assert mask.sum() == 64 - 16 and mask[2:6, 2:6].sum() == 0


def test_color_changes_brightness_saturation_and_contrast_per_example():
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, size=(8, 4, 4, 3)), jnp.float32)
  out = augment.color(x, jax.random.PRNGKey(2))
  assert out.shape == x.shape and not np.allclose(out, x)
  # Deterministic given the key, and differentiable (the generator trains through it).
  np.testing.assert_array_equal(out, augment.color(x, jax.random.PRNGKey(2)))
  g = jax.grad(lambda v: jnp.sum(augment.diff_augment(v, ("color", "translation", "cutout"),
                                                      jax.random.PRNGKey(3))))(x)
  assert np.isfinite(g).all() and np.any(g != 0)


def test_policy_parsing():
  assert augment.parse_policy("color, translation,cutout") == ("color", "translation", "cutout")
  assert augment.parse_policy("") == ()
  with pytest.raises(ValueError, match="unknown DiffAugment transform 'flip'"):
    augment.parse_policy("color,flip")


def test_labelled_subset_takes_per_class_examples_chosen_by_seed():
  labels = np.repeat(np.arange(10), 50)
  a = data.labelled_subset(labels, 10, seed=0)
  assert len(a) == 100 and np.all(np.bincount(labels[a]) == 10)
  np.testing.assert_array_equal(a, data.labelled_subset(labels, 10, seed=0))
  assert not np.array_equal(a, data.labelled_subset(labels, 10, seed=1))
  with pytest.raises(DataError, match="class 0 has only 50 examples"):
    data.labelled_subset(labels, 51, seed=0)


def test_cluster_accuracy_finds_the_best_one_to_one_mapping():
  labels = np.array([0, 0, 1, 1, 2, 2, 2])
  clusters = np.array([5, 5, 3, 3, 7, 7, 3])  # 5->0, 3->1, 7->2: one error
  acc, mapping = cluster_accuracy(clusters, labels)
  assert acc == pytest.approx(6 / 7) and mapping == {5: 0, 3: 1, 7: 2}
  # A permutation of the labels is a perfect clustering; one cluster for everything is not.
  perm = np.random.default_rng(0).permutation(10)
  y = np.random.default_rng(1).integers(0, 10, 500)
  assert cluster_accuracy(perm[y], y)[0] == 1.0
  assert cluster_accuracy(np.zeros_like(y), y)[0] == pytest.approx(np.bincount(y).max() / 500)
