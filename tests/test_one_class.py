"""Deep SVDD (one-class anomaly detection): the reference's LeNet networks, the centre's eps rule,
the objectives and the radius against closed forms, a run's exact resume, the training classes,
the pre-trained encoder taken from another run, and the AUROC of the in-loop evaluation."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import losses
from genjax import metrics
from genjax import parallel
from genjax import runs
from genjax import train
from genjax.config import base_config
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.methods import base as methods_base
from genjax.models import layers
from genjax.models import lenet
from genjax.models import lenet_ae
from tests.conftest import REPO
from tests.conftest import apply_overrides
from tests.conftest import tiny_run


def tiny(family: str, **overrides):
  """Synthetic 28px digits in [0, 1], class 3 normal, a few steps."""
  c = base_config(family)
  c.dataset.name = "synthetic"
  c.dataset.value_range = (0.0, 1.0)
  c.dataset.classes = (3,)
  if family == "lenet_ae":
    c.method.likelihood = "gaussian"
    c.method.sigma = 0.5 ** 0.5
  c.optimizer.b1 = 0.9
  c.optimizer.weight_decay = 1e-6
  return tiny_run(c, **overrides)


# --- the reference's networks (lukasruff/Deep-SVDD-PyTorch, src/networks/mnist_LeNet.py) -------

def _torch_lenet(autoencoder: bool):
  nn, F = torch.nn, torch.nn.functional

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(1, 8, 5, bias=False, padding=2)
      self.bn1 = nn.BatchNorm2d(8, eps=1e-04, affine=False)
      self.conv2 = nn.Conv2d(8, 4, 5, bias=False, padding=2)
      self.bn2 = nn.BatchNorm2d(4, eps=1e-04, affine=False)
      self.fc1 = nn.Linear(4 * 7 * 7, 32, bias=False)
      if autoencoder:
        self.deconv1 = nn.ConvTranspose2d(2, 4, 5, bias=False, padding=2)
        self.bn3 = nn.BatchNorm2d(4, eps=1e-04, affine=False)
        self.deconv2 = nn.ConvTranspose2d(4, 8, 5, bias=False, padding=3)
        self.bn4 = nn.BatchNorm2d(8, eps=1e-04, affine=False)
        self.deconv3 = nn.ConvTranspose2d(8, 1, 5, bias=False, padding=2)

    def forward(self, x):
      x = F.max_pool2d(F.leaky_relu(self.bn1(self.conv1(x))), 2, 2)
      x = F.max_pool2d(F.leaky_relu(self.bn2(self.conv2(x))), 2, 2)
      x = self.fc1(x.reshape(x.size(0), -1))  # view, on a contiguous copy
      if not autoencoder:
        return x
      x = F.interpolate(F.leaky_relu(x.reshape(x.size(0), 2, 4, 4)), scale_factor=2)
      x = F.interpolate(F.leaky_relu(self.bn3(self.deconv1(x))), scale_factor=2)
      x = F.interpolate(F.leaky_relu(self.bn4(self.deconv2(x))), scale_factor=2)
      return torch.sigmoid(self.deconv3(x))
  return Net()


@pytest.mark.parametrize("autoencoder", [False, True])
def test_lenet_matches_the_reference_counts_and_outputs(autoencoder):
  """7,272 parameters (Deep SVDD's φ) and 8,472 (its autoencoder), as the reference's layers;
  given the reference's weights, the same outputs in training mode (BatchNorm eps 1e-4)."""
  ref = _torch_lenet(autoencoder)
  family = lenet_ae if autoencoder else lenet
  net = family.build((28, 28, 1), rngs=nnx.Rngs(0))["model"]
  count = sum(p.numel() for p in ref.parameters())
  assert count == (8_472 if autoencoder else 7_272)
  assert layers.count_params(net) == count
  enc = net.encoder
  enc.convs[0].kernel[...] = jnp.asarray(ref.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
  enc.convs[1].kernel[...] = jnp.asarray(ref.conv2.weight.detach().numpy().transpose(2, 3, 1, 0))
  enc.fc.kernel[...] = jnp.asarray(ref.fc1.weight.detach().numpy().T)
  if autoencoder:
    for ours, theirs in zip(net.deconvs, (ref.deconv1, ref.deconv2, ref.deconv3)):
      ours.kernel[...] = jnp.asarray(theirs.weight.detach().numpy().transpose(2, 3, 0, 1))
  x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
  want = ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).detach().numpy()
  got = np.asarray(net(jnp.asarray(x))["recon"] if autoencoder else net(jnp.asarray(x)))
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1) if autoencoder else want,
                             rtol=1e-4, atol=1e-5)


# --- the objective, in closed form -------------------------------------------------------------

def test_center_moves_small_entries_to_plus_minus_eps():
  mean = jnp.array([0.05, -0.05, 0.0, 0.3, -0.2, 0.1, -0.1, 0.0999])
  np.testing.assert_allclose(losses.svdd_center(mean, 0.1),
                             [0.1, -0.1, 0.0, 0.3, -0.2, 0.1, -0.1, 0.1], rtol=1e-6)


def test_objectives_and_radius_closed_forms():
  z = jnp.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]) + jnp.array([0.5, -1.0])
  dist = losses.squared_distance(z, jnp.array([0.5, -1.0]))
  np.testing.assert_allclose(dist, [1, 4, 9, 16])
  assert float(losses.svdd_one_class(dist)) == pytest.approx(7.5)
  # R = 2, nu = 0.5: 4 + 2 * mean(0, 0, 5, 12)
  assert float(losses.svdd_soft_boundary(dist, 2.0, 0.5)) == pytest.approx(12.5)
  # the (1 - nu)-quantile of 1, 2, 3, 4 with linear interpolation
  assert float(losses.svdd_radius(dist, 0.5)) == pytest.approx(2.5)
  assert float(losses.svdd_radius(dist, 0.25)) == pytest.approx(3.25)


def test_center_is_the_mean_initial_output_and_radius_follows_the_warm_up():
  c = tiny("deep_svdd", **{"method.objective": "soft-boundary", "method.nu": 0.25,
                           "method.radius_warmup_steps": 1})
  method = runs.build_method(c)
  examples = data.load_config(c.dataset)
  assert set(np.unique(examples["label"])) == {3}
  state = method.prepare(jax.jit(method.init)(jax.random.PRNGKey(0)), examples)
  out = np.asarray(method.representation(state, method.images(examples["image"])))
  np.testing.assert_allclose(state.extra["center"], losses.svdd_center(out.mean(0), 0.1),
                             rtol=1e-5, atol=1e-6)
  batches = data.BatchIterator(examples, 16, seed=0)
  step = jax.jit(method.step)
  state, metrics_0 = step(state, next(batches))
  assert float(state.extra["radius"]) == 0.0  # warm-up
  batch = next(batches)
  x = method.images(batch["image"])
  dist = losses.squared_distance(method.representation(state, x, train=True),
                                 state.extra["center"])
  want = np.quantile(np.sqrt(np.asarray(dist, np.float64)), 0.75)
  state, metrics_1 = step(state, batch)
  assert float(state.extra["radius"]) == pytest.approx(want, rel=1e-5)
  assert float(metrics_1["loss"]) == pytest.approx(float(jnp.mean(dist)) / 0.25, rel=1e-5)
  assert np.isfinite(float(metrics_0["loss"]))


def test_adam_weight_decay_is_torch_adams_l2_and_step_schedule_drops_tenfold():
  c = base_config("deep_svdd")
  apply_overrides(c, {"optimizer.b1": 0.9, "optimizer.learning_rate": 1e-2,
                      "optimizer.weight_decay": 0.5, "optimizer.schedule": "step",
                      "optimizer.hold_steps": 2, "num_steps": 4})
  schedule = methods_base.make_schedule(c.optimizer, 4, 1e-2)
  assert [float(schedule(s)) for s in range(4)] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
  tx = methods_base.make_optimizer(c.optimizer, 1e-2)
  rng = np.random.default_rng(0)
  p0, grads = rng.normal(size=5).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
  ref = torch.nn.Parameter(torch.from_numpy(p0.copy()))
  opt = torch.optim.Adam([ref], lr=1e-2, weight_decay=0.5)
  params, opt_state = jnp.asarray(p0), tx.init(jnp.asarray(p0))
  for g in grads:
    ref.grad = torch.from_numpy(g.copy())
    opt.step()
    updates, opt_state = tx.update(jnp.asarray(g), opt_state, params)
    params = params + updates
  np.testing.assert_allclose(params, ref.detach().numpy(), rtol=1e-5, atol=1e-7)


# --- config, data: one line each ---------------------------------------------------------------

@pytest.mark.parametrize("overrides,message", [
    ({"dataset.classes": (10,)}, r"labels in \[0, 10\) of 'synthetic', got 10"),
    ({"dataset.classes": (-1,)}, r"got -1"),
    ({"dataset.name": "celeb_a"}, "'celeb_a' has no labels"),
    ({"method.objective": "hard"}, "config.method.objective must be one of"),
    ({"method.nu": 0.0}, r"nu must be in \(0, 1\]"),
    ({"optimizer.name": "sgd"}, "weight_decay .* 'adam' and 'adamw' only"),
    ({"eval.metrics": "auroc", "dataset.classes": ()}, "name them with --config.dataset.classes"),
])
def test_bad_configs_are_one_line(overrides, message):
  with pytest.raises(ConfigError, match=message) as e:
    config_lib.validate(tiny("deep_svdd", **overrides))
  assert "\n" not in str(e.value)


def test_models_without_scores_labels_or_the_likelihood_are_refused():
  c = base_config("dcgan")
  apply_overrides(c, {"dataset.classes": (3,), "eval.metrics": "auroc"})
  with pytest.raises(ConfigError, match="needs anomaly scores, and model 'dcgan'"):
    config_lib.validate(c)
  c = base_config("pix2pix")
  apply_overrides(c, {"dataset.name": "edges2fashion", "dataset.classes": (3,)})
  with pytest.raises(ConfigError, match="'edges2fashion' has no labels"):
    config_lib.validate(c)
  with pytest.raises(ConfigError, match="likelihood must be one of gaussian, got 'bernoulli'"):
    config_lib.validate(tiny("lenet_ae", **{"method.likelihood": "bernoulli"}))


def test_classes_select_the_training_split_only():
  c = tiny("deep_svdd", **{"dataset.classes": (3, 5)})
  train_split, whole = data.load_config(c.dataset), data.load("synthetic", "train")
  assert set(np.unique(train_split["label"])) == {3, 5}
  assert len(train_split["image"]) == int(np.isin(whole["label"], (3, 5)).sum())
  np.testing.assert_array_equal(train_split["image"], whole["image"][np.isin(whole["label"],
                                                                             (3, 5))])
  assert len(data.load_config(c.dataset, "test")["image"]) == len(data.load("synthetic", "test")
                                                                   ["image"])
  with pytest.raises(DataError, match=r"no examples of classes \[7\]"):
    data.select_classes(data.Examples({"image": whole["image"][:2],
                                       "label": np.array([0, 1])}), (7,))
  with pytest.raises(DataError, match="the examples have no labels"):
    data.select_classes(data.Examples({"A": whole["image"][:2]}), (0,))


def test_global_contrast_normalization_and_the_references_class_extremes():
  x = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1)  # mean 1.5, mean |x - mean| = 1
  np.testing.assert_allclose(data.global_contrast_normalize(5 * x + 7).ravel(),
                             [-1.5, -0.5, 0.5, 1.5], rtol=1e-6)
  c = tiny("deep_svdd", **{"dataset.normalize": "gcn_l1"})
  method = runs.build_method(c)
  x = method.images(data.load_config(c.dataset)["image"])
  assert float(x.min()) == pytest.approx(0.0, abs=1e-6)
  assert float(x.max()) == pytest.approx(1.0, abs=1e-6)
  with pytest.raises(ConfigError, match="native size: set --config.dataset.image_size=0"):
    config_lib.validate(tiny("deep_svdd", **{"dataset.normalize": "gcn_l1",
                                             "dataset.image_size": 32}))
  try:
    mnist = data.load("mnist", "train", download=False)
  except DataError:
    pytest.skip("no local MNIST")
  # lukasruff/Deep-SVDD-PyTorch src/datasets/mnist.py: min_max of every class
  want = ((-0.8826567065619495, 9.001545489292527), (-0.6661464580883915, 20.108062262467364),
          (-0.7820454743183202, 11.665100841080346), (-0.7645772083211267, 12.895051191467457),
          (-0.7253923114302238, 12.683235701611533), (-0.7698501867861425, 13.103278415430502),
          (-0.778418217980696, 10.457837397569108), (-0.7129780970522351, 12.057777597673047),
          (-0.8280402650205075, 10.581538445782988), (-0.7369959242164307, 10.697039838804978))
  for k in range(10):
    extremes = data.gcn_extremes(mnist["image"][mnist["label"] == k])
    assert extremes == pytest.approx(want[k], rel=1e-13)


# --- runs: pre-training, the encoder it hands on, resume, AUROC --------------------------------

@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  root = tmp_path_factory.mktemp("svdd")
  train.train_and_evaluate(tiny("lenet_ae", **{"num_steps": 2, "eval.every": 2,
                                               "eval.metrics": "auroc"}), str(root / "ae"))
  return root


def _auroc_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [line for line in map(json.loads, f) if "auroc" in line]


def test_reconstruction_error_auroc_is_recorded(pretrained):
  lines = _auroc_lines(pretrained / "ae")
  assert [line["step"] for line in lines] == [2] and 0.0 <= lines[0]["auroc"] <= 1.0
  method, state, _ = runs.restore_run(pretrained / "ae")
  test = data.load("synthetic", "test")
  x = method.images(test["image"])
  recon = method.sampler_net(state).decode(method.sampler_net(state).encode(x))
  errors = np.sum(np.square(np.asarray(recon) - np.asarray(x)), axis=(1, 2, 3))
  assert lines[0]["auroc"] == pytest.approx(metrics.auroc(errors, test["label"] != 3), abs=1e-6)


def test_init_from_run_copies_the_encoder_and_refuses_another_architecture(pretrained):
  c = tiny("deep_svdd", **{"init.from_run": str(pretrained / "ae")})
  method = runs.build_method(c)
  state = jax.jit(method.init)(jax.random.PRNGKey(1))
  started = frozen.warm_start(state, method, frozen.warm_start_source(c))
  _, ae_state, _ = runs.restore_run(pretrained / "ae")
  for kind in ("params", "buffers"):
    ours = nnx.to_pure_dict(getattr(started, kind)["model"])["encoder"]
    theirs = nnx.to_pure_dict(getattr(ae_state, kind)["model"])["encoder"]
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  assert not np.array_equal(nnx.to_pure_dict(state.params["model"])["encoder"]["fc"]["kernel"],
                            nnx.to_pure_dict(ae_state.params["model"])["encoder"]["fc"]["kernel"])
  other = tiny("deep_svdd", **{"init.from_run": str(pretrained / "ae"), "model.rep_dim": 16})
  other_method = runs.build_method(other)
  other_state = jax.jit(other_method.init)(jax.random.PRNGKey(0))
  with pytest.raises(CheckpointError, match=r"does not fit network 'model': parameter "
                     r".*\['fc'\]\['kernel'\].* is \[196, 32\] there but \[196, 16\] here"):
    frozen.warm_start(other_state, other_method, frozen.warm_start_source(other))
  classifier = str(REPO / "experiments" / "classifiers" / "fashion_mnist")
  with pytest.raises(CheckpointError, match=r"\('classifier'\) shares no parameter with "
                     r"network 'model' of 'deep_svdd'"):
    frozen.warm_start(state, method, frozen.warm_start_source(
        tiny("deep_svdd", **{"init.from_run": classifier})))
  with pytest.raises(CheckpointError, match="config.init.from_run: no checkpoints in"):
    frozen.warm_start_source(tiny("deep_svdd", **{"init.from_run": str(pretrained / "none")}))


def test_deep_svdd_resumes_exactly_and_records_auroc(pretrained):
  common = {"init.from_run": str(pretrained / "ae"), "method.objective": "soft-boundary",
            "method.radius_warmup_steps": 1, "eval.every": 2, "eval.metrics": "auroc"}
  straight = train.train_and_evaluate(tiny("deep_svdd", **common), str(pretrained / "straight"))
  train.train_and_evaluate(tiny("deep_svdd", **common, num_steps=2), str(pretrained / "resumed"))
  resumed = train.train_and_evaluate(tiny("deep_svdd", **common), str(pretrained / "resumed"))
  assert checkpoint.fingerprint(resumed.state) == checkpoint.fingerprint(straight.state)
  assert float(straight.state.extra["radius"]) > 0
  lines = _auroc_lines(pretrained / "straight")
  assert [line["step"] for line in lines] == [2, 4]
  method = runs.build_method(tiny("deep_svdd", **common))
  test = data.load("synthetic", "test")
  scores = method.anomaly_scores(straight.state, test["image"])
  want = metrics.auroc(np.asarray(scores), test["label"] != 3)
  assert lines[-1]["auroc"] == pytest.approx(want, abs=1e-6)
  assert lines[-1]["normal_classes"] == [3] and lines[-1]["num_anomalous"] == int(
      (test["label"] != 3).sum())
  labels = np.asarray(test["label"])
  assert lines[-1]["auroc_by_class"] == {
      str(k): pytest.approx(metrics.auroc(np.asarray(scores)[np.isin(labels, (3, k))],
                                          labels[np.isin(labels, (3, k))] == k), abs=1e-6)
      for k in sorted(set(labels.tolist()) - {3})}


@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_soft_boundary_step_is_the_same_on_8_devices(strategy_name):
  """Parameters, BatchNorm statistics and R (the quantile of the global batch's distances,
  gathered under pmap) as on one device; SGD keeps the comparison well conditioned (see
  tests/test_parallel.py; its atol times 10: the soft boundary scales gradients by 1/nu)."""
  c = tiny("deep_svdd", **{"method.objective": "soft-boundary", "optimizer.name": "sgd",
                           "optimizer.learning_rate": 0.05, "optimizer.b1": 0.0,
                           "optimizer.weight_decay": 0.0})
  examples = data.load_config(c.dataset)
  batch = {"image": examples["image"][:c.batch_size]}
  single = runs.build_method(c)
  init = single.prepare(single.init(jax.random.PRNGKey(0)), examples)
  expected, _ = jax.device_get(jax.jit(single.step)(init, batch))
  strategy = parallel.make_strategy(strategy_name)
  method = runs.build_method(c, strategy.axis_name)
  new_state, _ = strategy.compile(method.step)(strategy.put_state(init),
                                               strategy.put_batch(batch))
  got = jax.device_get(strategy.get_state(new_state))
  assert float(got.extra["radius"]) > 0
  for what in ("params", "buffers", "extra"):
    for a, b in zip(jax.tree.leaves(getattr(got, what)), jax.tree.leaves(getattr(expected, what))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5, err_msg=what)
