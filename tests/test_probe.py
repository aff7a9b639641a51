"""genjax.metrics.probe: the linear probe against scikit-learn's LogisticRegression."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from genjax.errors import ConfigError
from genjax.metrics import probe


def _problem(seed=0, n=600, f=12, k=4):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(k, f)) * 1.5
  y = rng.integers(0, k, n)
  return (centres[y] + rng.normal(size=(n, f))).astype(np.float32), y


@pytest.mark.parametrize("c", [0.05, 1.0])
def test_the_probe_solves_scikit_learns_objective(c):
  x, y = _problem()
  ours = probe.fit_logistic(x, y, C=c, tol=1e-6)
  ref = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(x, y)
  assert float(ours.grad_norm) < 1e-6
  # The multinomial solution is unique up to a constant added to every class's weights (the
  # penalty fixes it for the weights; the unpenalised intercepts are compared centred).
  np.testing.assert_allclose(np.asarray(ours.weights), ref.coef_.T, atol=2e-3, rtol=2e-3)
  np.testing.assert_allclose(np.asarray(ours.bias) - np.mean(ours.bias),
                             ref.intercept_ - ref.intercept_.mean(), atol=2e-3)
  np.testing.assert_array_equal(np.asarray(ours.predict(x)), ref.predict(x))
  assert ours.accuracy(x, y) == pytest.approx(ref.score(x, y))


def test_a_warm_start_from_a_neighbouring_c_needs_fewer_iterations():
  x, y = _problem(1)
  cold = probe.fit_logistic(x, y, C=1.0)
  warm = probe.fit_logistic(x, y, C=1.0, init=probe.fit_logistic(x, y, C=0.5))
  assert int(warm.iterations) < int(cold.iterations)
  np.testing.assert_allclose(np.asarray(warm.weights), np.asarray(cold.weights), atol=1e-3)


@pytest.mark.parametrize("args,kwargs,message", [
    ((np.zeros((4, 2)), np.zeros(3, int)), {}, "features [N, F] and labels [N]"),
    ((np.zeros((4, 2)), np.array([0, 1, 2, 3])), {"num_classes": 3}, "labels must be in [0, 3)"),
    ((np.zeros((4, 2)), np.array([0, 1, -1, 0])), {}, "labels must be in"),
    ((np.zeros((4, 2)), np.zeros(4, int)), {"C": 0.0}, "C must be > 0"),
])
def test_bad_probe_input_is_one_line(args, kwargs, message):
  with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")
                     .replace(")", r"\)")) as e:
    probe.fit_logistic(*args, **kwargs)
  assert "\n" not in str(e.value)
