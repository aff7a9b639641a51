"""Data parallelism: one step under the mesh and pmap strategies on 8 CPU devices equals the
same step on one device with the same global batch (parameters, BatchNorm statistics, metrics).

Tolerance: rtol 1e-5 / atol 2e-6 (float32; the strategies only differ in the order in which the
gradient and batch-statistic sums are reduced). SGD keeps the comparison well conditioned: Adam's
first step is lr * sign(g), which would turn rounding noise in near-zero gradients into
lr-sized differences.
"""

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import data
from genjax import parallel
from genjax import runs
from genjax.errors import ConfigError
from tests.conftest import assert_steps_close
from tests.conftest import NUM_DEVICES
from tests.conftest import tiny_config

RTOL, ATOL = 1e-5, 2e-6
CASES = {
    "dcgan": ("dcgan", {}),  # BatchNorm in both networks, latent noise
    "vae": ("vae", {"method.binarize": True}),  # reparameterisation and binarisation noise
    "dae": ("ae", {"method.corruption": "salt_pepper", "method.corruption_level": 0.2}),
}


def _setup(family, overrides):
  c = tiny_config(family, **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.05,
                             "optimizer.b1": 0.0, **overrides})
  config_lib.validate(c)
  batch = {"image": data.load("synthetic", "train")["image"][:c.batch_size]}
  return c, batch, lambda axis: runs.build_method(c, axis)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_one_step_equals_single_device(case, strategy_name):
  family, overrides = CASES[case]
  c, batch, make = _setup(family, overrides)
  single = make(None)
  init = single.init(jax.random.PRNGKey(c.seed))
  expected, expected_metrics = jax.device_get(jax.jit(single.step)(init, batch))

  strategy = parallel.make_strategy(strategy_name)
  assert strategy.num_devices == NUM_DEVICES
  method = make(strategy.axis_name)
  state = strategy.put_state(method.init(jax.random.PRNGKey(c.seed)))
  placed = strategy.put_batch(batch)
  assert len(placed["image"].sharding.device_set) == NUM_DEVICES
  new_state, metrics = strategy.compile(method.step)(state, placed)
  got = jax.device_get(strategy.get_state(new_state))

  assert int(got.step) == 1
  assert_steps_close(got.params, expected.params, init.params, rtol=RTOL, atol=ATOL,
                     what="params")
  assert_steps_close(got.buffers, expected.buffers, init.buffers, rtol=RTOL, atol=ATOL, kink=0,
                     what="buffers")
  # The step really changed the statistics and parameters (the comparison is not vacuous).
  assert not np.allclose(jax.tree.leaves(got.params)[0], jax.tree.leaves(init.params)[0])
  stats = [x for x in jax.tree.leaves(got.buffers) if x.ndim]
  assert stats and any(np.abs(s).max() > 0 for s in stats)
  for k, v in strategy.fetch(metrics).items():
    np.testing.assert_allclose(v, expected_metrics[k], rtol=1e-5, err_msg=k)


def test_batch_must_divide_over_devices():
  strategy = parallel.make_strategy("mesh")
  with pytest.raises(ConfigError, match="batch_size=12 is not divisible by the 8 devices; use a "
                                        "multiple of 8"):
    strategy.check_batch(12)
  with pytest.raises(ConfigError, match="unknown parallel strategy 'tpu'"):
    parallel.make_strategy("tpu")


def test_batch_random_slices_the_global_sample():
  key = jax.random.PRNGKey(3)
  full = jax.random.normal(key, (16, 3))
  shards = jax.pmap(lambda _: parallel.batch_random(jax.random.normal, key, (2, 3), "i"),
                    axis_name="i")(np.zeros(NUM_DEVICES))
  np.testing.assert_array_equal(np.asarray(shards).reshape(16, 3), full)
