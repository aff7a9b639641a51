"""The GAN zoo: every family/config trains through the one adversarial method; its options
(n_critic, penalties, clipping, TTUR, DiffAugment, EMA, conditioning, InfoGAN, SGAN) do what
they say."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from genjax import config as config_lib
from genjax import data
from genjax import losses
from genjax import parallel
from genjax import runs
from genjax.data import augment
from genjax.errors import ConfigError
from genjax.methods import adversarial
from genjax.methods import base as methods_base
from genjax.methods import gan_parts
from genjax.metrics import cluster_accuracy
from tests.conftest import REPO
from tests.conftest import apply_overrides
from tests.conftest import tiny_config

ZOO = ("wgan", "wgan_gp", "lsgan", "hinge", "sngan", "sagan", "cgan", "acgan", "infogan", "sgan")


def tiny_zoo(name: str, **overrides):
  """The experiment config of ``name`` on tiny synthetic data with narrow networks."""
  c = importlib.import_module(f"experiments.configs.{name}_mnist").get_config()
  c.dataset.name = "synthetic"
  if c.dataset.image_size:
    c.dataset.image_size = 32
  c.model.ngf = c.model.ndf = 8
  if "latent_dim" in c.model:
    c.model.latent_dim = 16
  if "attention_size" in c.model:
    c.model.attention_size = 16
  c.batch_size = 16
  c.eval.every = 0
  c.compilation_cache_dir = ""
  apply_overrides(c, overrides)
  config_lib.validate(c)
  return c


def make(c):
  method = runs.build_method(c)
  state = jax.jit(method.init)(jax.random.PRNGKey(c.seed))
  arrays = data.load(c.dataset.name, "train")
  batches = data.BatchIterator(arrays, c.batch_size, seed=0)
  return method, state, batches


def changed(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_config_trains_through_the_one_method(name):
  c = tiny_zoo(name)
  method, state, batches = make(c)
  assert isinstance(method, adversarial.Adversarial)
  step = jax.jit(method.step)
  start = state
  turns = jnp.broadcast_to(method.critic.generator_turn(jnp.arange(1000)), (1000,))
  for _ in range(int(np.argmax(np.asarray(turns))) + 1):  # up to the first generator update
    state, metrics = step(state, next(batches))
  metrics = jax.device_get(metrics)
  assert all(np.isfinite(v) for v in metrics.values()), metrics
  assert changed(start.params["generator"], state.params["generator"])
  assert changed(start.params["discriminator"], state.params["discriminator"])
  expected = {"loss_d", "loss_g", "d_real", "d_fake"}
  expected |= {"acgan": {"aux_loss", "aux_accuracy_real"},
               "infogan": {"mi_categorical", "mi_continuous"},
               "sgan": {"supervised_loss", "supervised_accuracy"},
               "wgan_gp": {"penalty"}}.get(name, set())
  assert expected <= set(metrics)
  # Samples come out in the value range, on every grid.
  grids = jax.jit(method.sample_grids)(state, next(batches), jax.random.PRNGKey(1))
  lo, hi = method.value_range
  for grid in grids.values():
    assert grid.ndim == 5 and grid.shape[2:] == method.image_shape
    assert float(grid.min()) >= lo - 1e-6 and float(grid.max()) <= hi + 1e-6


def _reference_dcgan_step(method, state, batch):
  """genjax's DCGAN update before the zoo generalised it (pytorch/examples' scheme)."""
  d_loss_fn, g_loss_fn = losses.GAN_LOSSES["non_saturating"]
  real = method.images(batch["image"])
  z = parallel.batch_random(jax.random.normal, method.step_key(state),
                            (real.shape[0], method.config.model.latent_dim))

  def generate(params):
    g = method.net("generator", params, state.buffers["generator"])
    return g(z), method.buffers_of(g)

  fake, g_vjp, g_buffers = jax.vjp(generate, state.params["generator"], has_aux=True)

  def d_objective(params):
    d = method.net("discriminator", params, state.buffers["discriminator"])
    return d_loss_fn(d(real)["logit"], d(fake)["logit"]), method.buffers_of(d)

  (d_loss, d_buffers), d_grads = jax.value_and_grad(d_objective, has_aux=True)(
      state.params["discriminator"])
  d_params, d_opt = method.update(state, "discriminator", d_grads)

  def g_objective(fake_images):
    d = method.net("discriminator", d_params, d_buffers)
    return g_loss_fn(d(fake_images)["logit"]), method.buffers_of(d)

  (g_loss, d_buffers), fake_grads = jax.value_and_grad(g_objective, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_params, g_opt = method.update(state, "generator", g_grads)
  return method.finish(state, {"generator": g_params, "discriminator": d_params},
                       {"generator": g_buffers, "discriminator": d_buffers},
                       {"generator": g_opt, "discriminator": d_opt},
                       {"loss_d": d_loss, "loss_g": g_loss})


def test_default_config_keeps_the_dcgan_update_exactly():
  c = tiny_config("dcgan")
  method, state, batches = make(c)
  batch = next(batches)
  ours, metrics = jax.jit(method.step)(state, batch)
  ref, ref_metrics = jax.jit(lambda s, b: _reference_dcgan_step(method, s, b))(state, batch)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert float(metrics["loss_d"]) == pytest.approx(float(ref_metrics["loss_d"]), rel=1e-6)


def test_n_critic_updates_the_generator_every_nth_step_only():
  c = tiny_zoo("wgan_gp", **{"method.n_critic": 3})
  method, state, batches = make(c)
  step = jax.jit(method.step)
  g_before = state.params["generator"]
  for i in range(3):
    d_before = state.params["discriminator"]
    state, _ = step(state, next(batches))
    assert changed(d_before, state.params["discriminator"])
    assert changed(g_before, state.params["generator"]) == (i == 2)


def _reference_generator_turns(n_critic, burst, first, every, num_steps):
  """The reference WGAN loop (Diters = burst for the first `first` and every `every`-th
  generator update): the critic steps after which the generator is updated."""
  turns, step, g = set(), 0, 0
  while True:
    step += burst if g < first or g % every == 0 else n_critic
    if step > num_steps:
      return turns
    turns.add(step - 1)
    g += 1


@pytest.mark.parametrize("n_critic,burst", [(5, (100, 25, 500)), (2, (4, 3, 6)), (1, (3, 1, 1))])
def test_critic_burst_follows_the_reference_loop(n_critic, burst):
  mc = tiny_zoo("wgan", **{"method.n_critic": n_critic, "method.critic_burst": burst}).method
  num_steps = 60000 if burst[0] == 100 else 400
  turn = gan_parts.Critic(mc, (None, None), None).generator_turn(jnp.arange(num_steps))
  want = _reference_generator_turns(n_critic, *burst, num_steps)
  assert set(np.flatnonzero(np.asarray(turn)).tolist()) == want


def test_critic_burst_holds_the_generator_during_the_burst():
  c = tiny_zoo("wgan", **{"method.n_critic": 1, "method.critic_burst": (3, 1, 4)})
  method, state, batches = make(c)
  step = jax.jit(method.step)
  for i in range(5):  # generator updates 0 (a burst: steps 0-2), 1 (step 3), 2 (step 4)
    g_before = state.params["generator"]
    state, _ = step(state, next(batches))
    assert changed(g_before, state.params["generator"]) == (i >= 2), i


def test_weight_clipping_and_ttur():
  c = tiny_zoo("wgan", **{"method.d_learning_rate": 3e-4})
  method, state, batches = make(c)
  assert float(method.schedules["discriminator"](0)) == pytest.approx(3e-4)
  assert float(method.schedules["generator"](0)) == pytest.approx(5e-5)
  state, _ = jax.jit(method.step)(state, next(batches))
  leaves = jax.tree.leaves(state.params["discriminator"])
  assert max(float(jnp.abs(x).max()) for x in leaves) <= 0.01 + 1e-7
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(state.params["generator"])) > 0.01


def test_wgan_rmsprop_is_torch_rmsprop():
  """WGAN's optimizer against torch.optim.RMSprop (the reference's) on gradients of ~1e-5 to
  1e-3, where eps inside the root (optax's default) would shrink the steps."""
  c = tiny_zoo("wgan")
  tx = methods_base.make_optimizer(c.optimizer, c.optimizer.learning_rate)
  rng = np.random.default_rng(0)
  p0 = rng.normal(size=64).astype(np.float32) * 1e-2
  scales = np.logspace(-5, -3, 64).astype(np.float32)
  ref = torch.nn.Parameter(torch.from_numpy(p0.copy()))
  opt = torch.optim.RMSprop([ref], lr=c.optimizer.learning_rate, alpha=c.optimizer.b2)
  params, opt_state = jnp.asarray(p0), tx.init(jnp.asarray(p0))
  for _ in range(5):
    g = rng.normal(size=64).astype(np.float32) * scales
    ref.grad = torch.from_numpy(g.copy())
    opt.step()
    updates, opt_state = tx.update(jnp.asarray(g), opt_state, params)
    params = params + updates
  np.testing.assert_allclose(params - p0, ref.detach().numpy() - p0, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("penalty", ["r1", "r2"])
def test_lazy_penalty_is_applied_every_n_steps_with_its_weight_scaled(penalty):
  c = tiny_zoo("hinge", **{"method.penalty": penalty, "method.penalty_every": 2,
                           "method.penalty_weight": 1.0})
  method, state, batches = make(c)
  step = jax.jit(method.step)
  seen = []
  for _ in range(3):
    state, metrics = step(state, next(batches))
    seen.append(float(metrics["penalty"]))
  assert seen[0] > 0 and seen[1] == 0 and seen[2] > 0


def test_conditional_r2_judges_the_fakes_under_their_own_labels():
  c = tiny_zoo("cgan", **{"method.penalty": "r2", "method.penalty_weight": 1.0})
  method, state, batches = make(c)
  batch = next(batches)
  _, metrics = jax.jit(method.step)(state, batch)

  @jax.jit
  def r2():
    """1/2 E ||grad_x D(x, labels)||^2 on the step's fakes (made again from its key), by the
    step's discriminator, under the fakes' own labels and under the real batch's."""
    latent = method.sample_latent(method.step_key(state), c.batch_size, None)
    fake = method.generate(
        method.net("generator", state.params["generator"], state.buffers["generator"]), latent)

    def penalty(labels):
      def d_sum(x):
        d = method.net("discriminator", state.params["discriminator"],
                       state.buffers["discriminator"])
        return jnp.sum(method.call_d(d, x, labels, None)["logit"])
      return 0.5 * jnp.mean(jnp.sum(jnp.square(jax.grad(d_sum)(fake)), axis=(1, 2, 3)))
    return penalty(latent["labels"]), penalty(batch["label"])

  own, real = map(float, r2())
  assert abs(own - real) > 0.05 * own  # the projection's gradient depends on the label
  assert float(metrics["penalty"]) == pytest.approx(own, rel=1e-4)


def test_diffaugment_applies_to_real_and_fake_inputs(monkeypatch):
  c = tiny_zoo("hinge", **{"method.diffaugment": "translation,cutout"})
  method, state, batches = make(c)
  calls = []
  original = augment.diff_augment

  def spy(x, policy, key, axis_name=None):
    calls.append(x.shape)
    return original(x, policy, key, axis_name)
  monkeypatch.setattr(augment, "diff_augment", spy)
  _, metrics = jax.jit(method.step)(state, next(batches))
  # Real and fake for the discriminator, fake again for the generator.
  assert len(calls) == 3 and np.isfinite(float(metrics["loss_d"]))
  # The real images the discriminator sees are augmented.
  real = method.images(next(batches)["image"])
  assert not np.allclose(method.critic.augment(real, jax.random.PRNGKey(0)), real)


def test_ema_weights_draw_the_samples_and_evaluation():
  c = tiny_zoo("hinge", ema_decay=0.5)
  method, state, batches = make(c)
  state, _ = jax.jit(method.step)(state, next(batches))
  ema, params = state.ema["generator"], state.params["generator"]
  # decay 0.5 after one step: halfway between the initial and the updated weights.
  init = jax.jit(method.init)(jax.random.PRNGKey(c.seed)).params["generator"]
  for e, p, i in zip(jax.tree.leaves(ema), jax.tree.leaves(params), jax.tree.leaves(init)):
    np.testing.assert_allclose(e, 0.5 * i + 0.5 * p, rtol=1e-5, atol=1e-7)
  latent = method.eval_inputs(jax.random.PRNGKey(0), 4, None)
  out = method.eval_generate(state, latent)
  with_ema = method.generate(method.net("generator", ema, state.buffers["generator"],
                                        train=False), latent)
  without = method.generate(method.net("generator", params, state.buffers["generator"],
                                       train=False), latent)
  np.testing.assert_allclose(out, with_ema, rtol=1e-6)
  assert not np.allclose(out, without)


def test_conditional_generators_get_labels_and_grids_have_one_row_per_class():
  for name in ("cgan", "acgan"):
    c = tiny_zoo(name)
    method, state, _ = make(c)
    assert method.cond_classes == 10
    assert [type(t) for t in method.terms] == (
        [gan_parts.AuxiliaryClassifier] if name == "acgan" else [])
    latent = method.eval_inputs(jax.random.PRNGKey(0), 8, None)
    assert latent["labels"].shape == (8,)
    images = np.zeros((20, 28, 28, 1), np.uint8)
    grids = method.sample_grids(state, {"image": images}, jax.random.PRNGKey(0))
    assert grids["samples"].shape[:2] == (10, 2)
    # Different labels with the same noise give different images (once the per-class scales of
    # the conditional BatchNorm, all 1 at initialisation, differ).
    leaves, tree = jax.tree.flatten(state.params["generator"])
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    state = state.replace(params=dict(state.params, generator=jax.tree.unflatten(tree, leaves)))
    a = dict(latent, labels=jnp.zeros(8, jnp.int32))
    b = dict(latent, labels=jnp.ones(8, jnp.int32))
    assert not np.allclose(method.eval_generate(state, a), method.eval_generate(state, b))


def test_conditional_samples_are_scored_as_their_labels_and_unconditional_ones_not(tmp_path):
  """The evaluator's label_accuracy of AC-GAN samples (40 in batches of 16: the last one padded)
  is the MNIST classifier's accuracy on the same samples against the labels they were drawn
  with; DCGAN's samples have no labels and no label_accuracy."""
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  options = {"dataset.name": "mnist", "eval.num_samples": 40, "eval.num_real": 64,
             "eval.metrics": "kid", "eval.batch_size": 16, "eval.cache_dir": str(tmp_path)}
  method, state, _ = make(tiny_zoo("acgan", **options))
  rng = jax.random.PRNGKey(1)
  out = evaluation.Evaluator(method.config, method)(state, rng)
  inputs = [method.eval_inputs(jax.random.fold_in(rng, i), 16, None) for i in (0, 16, 32)]
  images = np.concatenate([method.eval_generate(state, x) for x in inputs])[:40]
  labels = np.concatenate([x["labels"] for x in inputs])[:40]
  classifier = runs.load_classifier(REPO / "experiments" / "classifiers" / "mnist")
  low, high = method.value_range
  logits = classifier((images - low) / (high - low))["logits"]
  assert out["label_accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == labels))
  method, state, _ = make(tiny_zoo("lsgan", **options))
  assert "label_accuracy" not in evaluation.Evaluator(method.config, method)(state, rng)


def test_infogan_grids_vary_one_code_at_a_time():
  c = tiny_zoo("infogan")
  method, state, _ = make(c)
  grids = method.sample_grids(state, {"image": np.zeros((64, 28, 28, 1), np.uint8)},
                              jax.random.PRNGKey(0))
  assert set(grids) == {"samples", "categorical", "continuous_0", "continuous_1"}
  assert grids["categorical"].shape[:2] == (6, 10)
  assert grids["continuous_0"].shape[:2] == (10, 8)
  # Along a row of the categorical grid only the category changes.
  assert not np.allclose(grids["categorical"][0, 0], grids["categorical"][0, 1])


def _d_classes(method, d_params, state, images, head="class_logits"):
  """The argmax of the discriminator's ``head`` for ``images``, in inference mode."""
  d = method.net("discriminator", d_params, state.buffers["discriminator"], train=False)
  return np.asarray(jnp.argmax(method.call_d(d, method.images(images), None, None)[head], -1))


def test_sgan_trains_its_classifier_on_the_labelled_subset_only():
  c = tiny_zoo("sgan", **{"method.labelled_per_class": 2})
  method, state, _ = make(c)
  subset = method._labelled_subset()  # pylint: disable=protected-access
  assert subset["image"].shape[0] == 20 and np.all(np.bincount(subset["label"]) == 2)
  x, y = jax.jit(lambda k: method.labelled_batch(k, 16))(jax.random.PRNGKey(0))
  pool = {(int(l), np.asarray(method.images(i[None])).tobytes())
          for i, l in zip(subset["image"], subset["label"])}
  assert all((int(l), np.asarray(xi[None]).tobytes()) in pool for xi, l in zip(x, y))
  # The accuracy is that of the discriminator's classes.
  arrays = data.load("synthetic", "test")
  images, labels = arrays["image"][:50], arrays["label"][:50]
  result = adversarial.class_accuracy(method, state, images, labels)
  assert result["mode"] == "supervised" and result["num_examples"] == 50
  assert result["accuracy"] == pytest.approx(np.mean(
      _d_classes(method, state.params["discriminator"], state, images) == labels))


def test_infogan_accuracy_uses_the_hungarian_mapping():
  c = tiny_zoo("infogan")
  method, state, _ = make(c)
  arrays = data.load("synthetic", "test")
  images, labels = arrays["image"][:50], arrays["label"][:50]
  result = adversarial.class_accuracy(method, state, images, labels)
  assert result["mode"] == "hungarian"
  # The categorical code read back by the Q head, mapped one-to-one onto the labels.
  codes = _d_classes(method, state.params["discriminator"], state, images, "code_logits")
  mapping = result["mapping"]
  assert len(set(mapping.values())) == len(mapping) and set(codes) <= set(mapping)
  assert result["accuracy"] == pytest.approx(np.mean([mapping[k] for k in codes] == labels))
  assert result["accuracy"] == pytest.approx(cluster_accuracy(codes, labels)[0])


@pytest.mark.parametrize("key,value,match", [
    ("method.penalty", "l2", "config.method.penalty must be one of none, gp, r1, r2, got 'l2'"),
    ("method.n_critic", 0, "config.method.n_critic must be an integer >= 1"),
    ("method.penalty_every", 0, "config.method.penalty_every must be an integer >= 1"),
    ("method.critic_burst", (100, 25), r"critic_burst must be \(\) or \(n, first, every\)"),
    ("method.critic_burst", (100, 600, 500), "with first <= every, got"),
    ("method.clip_value", -0.1, "config.method.clip_value must be >= 0"),
    ("method.diffaugment", "color,flip", "config.method.diffaugment: unknown DiffAugment"),
    ("method.loss", "relativistic", "config.method.loss must be one of non_saturating, minimax, "
     "least_squares, wasserstein, hinge"),
    ("method.noise", "cauchy", "config.method.noise must be one of normal, uniform, got 'cauchy'"),
])
def test_bad_gan_options_fail_in_one_line(key, value, match):
  c = tiny_config("dcgan", **{key: value})
  with pytest.raises(ConfigError, match=match) as info:
    config_lib.validate(c)
  assert "\n" not in str(info.value)


def test_incompatible_networks_and_options_fail_in_one_line():
  c = tiny_config("dcgan", **{"method.penalty": "gp"})
  with pytest.raises(ConfigError, match="set --config.model.d_norm=none"):
    config_lib.validate(c)
  c = tiny_config("dcgan", **{"method.labelled_per_class": 10})
  with pytest.raises(ConfigError, match="needs an unconditional generator and a discriminator "
                     "with class logits"):
    runs.build_method(c)
  c = tiny_zoo("sgan", **{"method.labelled_per_class": 0})
  with pytest.raises(ConfigError, match="set --config.method.labelled_per_class"):
    runs.build_method(c)
  c = tiny_zoo("acgan", **{"model.num_classes": 7})
  with pytest.raises(ConfigError, match="set --config.model.num_classes=10"):
    runs.build_method(c)
  c = tiny_zoo("sgan", **{"method.labelled_per_class": 100000})
  method = runs.build_method(c)
  with pytest.raises(ConfigError, match="labelled_per_class: class 0 has only"):
    method._labelled_subset()  # pylint: disable=protected-access


def test_discriminator_ema_is_kept_and_used_for_classification():
  c = tiny_zoo("sgan", **{"method.labelled_per_class": 2, "method.d_ema_decay": 0.5})
  method, state, batches = make(c)
  assert set(state.ema) == {"discriminator"}  # config.ema_decay is 0: no generator EMA
  init = state.params["discriminator"]
  state, _ = jax.jit(method.step)(state, next(batches))
  for e, p, i in zip(jax.tree.leaves(state.ema["discriminator"]),
                     jax.tree.leaves(state.params["discriminator"]), jax.tree.leaves(init)):
    np.testing.assert_allclose(e, 0.5 * i + 0.5 * p, rtol=1e-5, atol=1e-7)
  # Classification uses the EMA weights. One step moves them too little to classify otherwise
  # than the raw weights, so give them weights that do, and label the images by those.
  images = data.load("synthetic", "test")["image"][:40]
  leaves, tree = jax.tree.flatten(state.params["discriminator"])
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  other = jax.tree.unflatten(tree, [p + 2.0 * jax.random.normal(k, p.shape, p.dtype)
                                    for p, k in zip(leaves, keys)])
  labels = _d_classes(method, other, state, images)
  raw = np.mean(_d_classes(method, state.params["discriminator"], state, images) == labels)
  assert raw < 0.9
  state = state.replace(ema={"discriminator": other})
  assert adversarial.class_accuracy(method, state, images, labels)["accuracy"] == 1.0
  swapped = state.replace(ema={"discriminator": state.params["discriminator"]})
  assert adversarial.class_accuracy(method, swapped, images, labels)["accuracy"] == (
      pytest.approx(raw))


@pytest.mark.parametrize("spectral", [True, False])
def test_unnormalised_discriminator_is_not_positively_homogeneous(spectral):
  """Without a norm after its convs the discriminator needs conv biases: a bias-free LeakyReLU
  network satisfies ``D(c x) = c D(x)`` (up to the head's bias), so it scores every image near 0
  (e.g. the grey first samples of a generator) about the same and gives the generator almost no
  signal; cGAN-projection and SNGAN then stayed grey on MNIST."""
  from flax import nnx
  from genjax.models import gan_nets
  d = gan_nets.Discriminator(1, 32, 8, norm="none", spectral=spectral, head="projection",
                             num_classes=10, rngs=nnx.Rngs(0))
  for mod in [d.first, *d.convs]:
    assert mod.bias is not None
  # Biases start at zero: give them values to make the check meaningful.
  for mod in [d.first, *d.convs]:
    mod.bias[...] = 0.1 * jnp.ones_like(mod.bias[...])
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 1))
  y = jnp.arange(4)
  bias = d.out.psi.bias[...][0]
  small = d(0.01 * x, y)["logit"] - bias
  big = d(x, y)["logit"] - bias
  assert not np.allclose(100 * np.asarray(small), np.asarray(big), rtol=1e-2, atol=1e-4)
  # The DCGAN layout (BatchNorm after the inner convs) keeps its bias-free convs.
  d_bn = gan_nets.Discriminator(1, 32, 8, norm="batch", rngs=nnx.Rngs(0))
  assert d_bn.first.bias is None and all(c.bias is None for c in d_bn.convs)


def test_dcgan_critic_without_norm_has_biases():
  """WGAN-GP's critic (DCGAN's networks, ``model.d_norm='none'``) gets conv biases for the same
  reason; the generator keeps BatchNorm and pytorch/examples' bias-free convs."""
  from flax import nnx
  from genjax.models import dcgan
  nets = dcgan.build((32, 32, 1), rngs=nnx.Rngs(0), latent_dim=8, ngf=8, ndf=8, d_norm="none")
  body = nets["discriminator"].body
  convs = [body.first, *(conv for conv, _ in body.blocks)]
  assert all(conv.bias is not None for conv in convs)
  for conv in convs:
    conv.bias[...] = 0.1 * jnp.ones_like(conv.bias[...])
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 1))
  d = nets["discriminator"]
  assert not np.allclose(100 * np.asarray(d(0.01 * x)["logit"]), np.asarray(d(x)["logit"]),
                     rtol=1e-2, atol=1e-4)
  g = nets["generator"].body
  assert all(conv.bias is None for conv, _ in g.blocks)
  assert all(isinstance(norm, nnx.BatchNorm) for _, norm in g.blocks)
  with pytest.raises(ValueError, match="unknown norm"):
    dcgan.build((32, 32, 1), rngs=nnx.Rngs(0), latent_dim=8, ngf=8, ndf=8, d_norm="group")


@pytest.mark.parametrize("noise", ["normal", "uniform"])
def test_generator_noise_distribution(noise):
  method = runs.build_method(tiny_config("dcgan", **{"method.noise": noise}))
  z = np.asarray(method.sample_latent(jax.random.key(0), 4096, None)["z"])
  if noise == "uniform":  # U(-1, 1): mean 0, variance 1/3, bounded
    assert z.min() >= -1 and z.max() <= 1 and abs(z.var() - 1 / 3) < 0.01
  else:
    assert abs(z.var() - 1) < 0.03 and np.abs(z).max() > 3
