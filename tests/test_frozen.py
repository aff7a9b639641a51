"""Frozen networks named by the config (``config.frozen``): checked at start-up in one line, passed
to the step as an argument (never optimised, never checkpointed), on one device, a mesh and pmap;
and their first user, the translation method's perceptual term."""

import logging
import re

import jax
import numpy as np
import pytest

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import kernels
from genjax import parallel
from genjax import runs
from genjax import train
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.errors import GenjaxError
from tests.conftest import REPO
from tests.conftest import assert_steps_close
from tests.conftest import run_main
from tests.test_translation import tiny

CLASSIFIER = str(REPO / "experiments" / "classifiers" / "fashion_mnist")
PERCEPTUAL = {"method.lambda_perceptual": 1.0, "frozen.perceptual": CLASSIFIER}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
  """Two steps of a tiny Pix2Pix with the perceptual term, straight and in two sittings."""
  root = tmp_path_factory.mktemp("frozen")
  common = {"num_steps": 2, "log_every": 1, "checkpoint_every": 1, "sample_every": 2,
            **PERCEPTUAL}
  results = {"straight": train.train_and_evaluate(tiny("pix2pix_edges2fashion", **common),
                                                  str(root / "straight"))}
  train.train_and_evaluate(tiny("pix2pix_edges2fashion", **{**common, "num_steps": 1}),
                           str(root / "resumed"))
  results["resumed"] = train.train_and_evaluate(tiny("pix2pix_edges2fashion", **common),
                                                str(root / "resumed"))
  return root, results


def test_config_names_slots_and_requires_them():
  c = tiny("pix2pix_edges2fashion")
  assert dict(c.frozen) == {"perceptual": ""}  # one key per slot of the method, none named
  assert dict(config_lib.base_config("dcgan").frozen) == {}
  c.frozen.unlock()
  c.frozen.vgg = "somewhere"
  with pytest.raises(ConfigError, match=r"^unknown key config.frozen.vgg; valid keys: "
                                        r"perceptual$"):
    config_lib.validate(c)
  c = config_lib.base_config("dcgan")
  c.frozen.unlock()
  c.frozen.perceptual = CLASSIFIER
  with pytest.raises(ConfigError, match="unknown key config.frozen.perceptual; valid keys: none"):
    config_lib.validate(c)
  with pytest.raises(ConfigError, match=r"^this config needs a frozen feature network for "
                                        r"method.lambda_perceptual: set "
                                        r"--config.frozen.perceptual=RUN \(a genjax run's "
                                        r"workdir, RUN@STEP, NAME.npz\)$"):
    tiny("pix2pix_edges2fashion", **{"method.lambda_perceptual": 1.0})
  with pytest.raises(ConfigError, match="lambda_perceptual needs paired examples, and "
                                        "'colored_mnist' is unpaired"):
    tiny("cyclegan_colored_mnist", **{"method.lambda_L1": 0.0, **PERCEPTUAL})
  tiny("pix2pix_edges2fashion", **{"frozen.perceptual": CLASSIFIER})  # named, unused: fine


@pytest.mark.parametrize("flags,message", [
    (["--config.frozen.perceptual=nowhere"],
     "genjax: error: config.frozen.perceptual: no checkpoints in nowhere/checkpoints"),
    ([], "genjax: error: this config needs a frozen feature network for "
         "method.lambda_perceptual: set --config.frozen.perceptual=RUN"),
    (["--config.frozen.vgg=x"], "genjax: error: unknown config key config.frozen.vgg; "
                                "config.frozen has: perceptual"),
])
def test_command_line_names_frozen_networks(tmp_path, flags, message):
  out = run_main(tmp_path / "run", "--config.method.lambda_perceptual=1",
                 "--config.compilation_cache_dir=", *flags,
                 config="experiments/configs/pix2pix_edges2fashion.py")
  assert out.returncode == 2
  lines = [line for line in out.stderr.splitlines() if line.startswith("genjax: error:")]
  assert len(lines) == 1 and lines[0].startswith(message), out.stderr[-2000:]
  assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


def test_bad_sources_are_one_line_and_write_nothing(tmp_path, runs_dir):
  (tmp_path / "garbage.npz").write_bytes(b"not a zip")
  pix2pix_run = str(runs_dir[0] / "straight")
  cases = {
      str(tmp_path / "nothing"): r"^config.frozen.perceptual: no checkpoints in .*nothing",
      str(tmp_path / "vgg19.pth"): r"^config.frozen.perceptual=.*vgg19.pth is a PyTorch file, "
                                   r"and this slot takes a frozen feature network",
      str(tmp_path / "garbage.npz"): r"^config.frozen.perceptual: cannot read .*garbage.npz as a "
                                     r"genjax export",
      CLASSIFIER + "#G": r"^config.frozen.perceptual: .*fashion_mnist#G has no network 'G'; it "
                         r"has model$",
      pix2pix_run + "#G": r"^config.frozen.perceptual=.*#G is a 'pix2pix' network, and this slot "
                          r"takes a frozen feature network for method.lambda_perceptual: a "
                          r"'classifier' run or export$",
  }
  for source, message in cases.items():
    c = tiny("pix2pix_edges2fashion", **{**PERCEPTUAL, "frozen.perceptual": source})
    with pytest.raises(CheckpointError, match=message) as e:
      train.train_and_evaluate(c, str(tmp_path / "run"))
    assert "\n" not in str(e.value)
  assert not (tmp_path / "run").exists()


def test_bad_export_and_restore_requests_are_one_line_and_write_nothing(tmp_path, runs_dir):
  run = str(runs_dir[0] / "straight")
  a_file = tmp_path / "notes"
  a_file.write_text("notes")
  (tmp_path / "folder").mkdir()
  cases = [
      (lambda: frozen.export(run, str(tmp_path / "g.npz"), dtype="int8"),
       r"^cannot store an export as 'int8'; choose one of float32, float16, float64$"),
      (lambda: frozen.export(run, str(tmp_path / "folder")),
       r"^.*folder is a folder: give the \.npz file to write$"),
      (lambda: frozen.export(run, str(a_file / "g.npz")),
       r"^cannot write .*notes/g\.npz: Not a directory$"),
      (lambda: frozen.export_torch(run, str(a_file)),
       r"^cannot make the \.pth files' folder .*notes \(it is a file\)$"),
      (lambda: frozen.from_run(run + "@7"),
       r"^no checkpoint step 7 in .*straight/checkpoints; it has steps 1, 2$"),
  ]
  for call, message in cases:
    with pytest.raises(GenjaxError, match=message) as e:
      call()
    assert "\n" not in str(e.value)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes"]
  assert a_file.read_text() == "notes" and not list((tmp_path / "folder").iterdir())


def test_perceptual_pix2pix_trains_resumes_exactly_and_checkpoints_no_frozen_weights(runs_dir):
  root, results = runs_dir
  straight, resumed = results["straight"], results["resumed"]
  assert straight.step == resumed.step == 2
  assert straight.metrics["perceptual"] > 0 and np.isfinite(straight.metrics["perceptual"])
  assert checkpoint.fingerprint(straight.state) == checkpoint.fingerprint(resumed.state)
  meta = checkpoint.Checkpointer(str(root / "straight" / "checkpoints"), keep=3).read_meta(2)
  assert meta["frozen"] == {"perceptual": CLASSIFIER}
  # The checkpoint holds Pix2Pix's state and nothing of the classifier: the same arrays as
  # without the perceptual term.
  plain = runs.build_method(tiny("pix2pix_edges2fashion"))
  assert meta["signature"] == checkpoint.signature(
      jax.eval_shape(plain.init, jax.random.PRNGKey(0)))
  assert meta["signature"] == checkpoint.signature(straight.state)
  assert set(straight.state.params) == {"G", "D"}


def test_resume_with_other_frozen_sources_warns(runs_dir, caplog):
  root, _ = runs_dir
  c = tiny("pix2pix_edges2fashion", num_steps=2,
           **{**PERCEPTUAL, "frozen.perceptual": CLASSIFIER + "@4000"})
  caplog.set_level(logging.INFO)
  train.train_and_evaluate(c, str(root / "straight"))  # at step 2 of 2 already: loads, warns
  assert (f"the run so far used the frozen networks {{'perceptual': {CLASSIFIER!r}}}, this "
          f"process uses {{'perceptual': {CLASSIFIER + '@4000'!r}}}") in caplog.text


def _frozen_weights(method):
  return method.attach_frozen(frozen.for_config(method.config, method))


@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_frozen_weights_are_replicated_arguments_and_stay_unchanged(strategy_name):
  """Two steps on 8 devices equal one device's; the classifier's weights are arguments of the
  step (not constants of the program) and come out bit-identical; G learns through them."""
  c = tiny("pix2pix_edges2fashion", **PERCEPTUAL, **{
      "optimizer.name": "sgd", "optimizer.learning_rate": 0.05, "optimizer.b1": 0.0,
      "method.gan_weight": 0.0, "method.lambda_L1": 0.0})
  examples = data.load_config(c.dataset)
  batches = data.BatchIterator(examples, 8, seed=0)
  batch = next(batches)
  single = runs.build_method(c)
  weights = _frozen_weights(single)
  source = jax.device_get(weights)
  init = single.init(jax.random.PRNGKey(0))
  step = jax.jit(single.step)
  expected, metrics = jax.device_get(step(init, batch, weights))
  assert float(metrics["loss_g"]) == pytest.approx(float(metrics["perceptual"]))
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(expected.params["G"]),
                                                      jax.tree.leaves(init.params["G"]))]
  assert any(moved)  # the perceptual term alone moves G: gradients flow through the classifier
  lowered = step.lower(init, batch, weights)
  assert lowered.in_tree.num_leaves == sum(len(jax.tree.leaves(t)) for t in (init, batch, weights))
  assert not re.search(r'dense<"0x[0-9A-F]{2000}', lowered.as_text())  # no weights as constants

  strategy = parallel.make_strategy(strategy_name)
  method = runs.build_method(c, strategy.axis_name)
  placed_weights = strategy.put_state(_frozen_weights(method))
  step_fn = strategy.compile(method.step, frozen=True)
  state = strategy.put_state(method.init(jax.random.PRNGKey(0)))
  state, _ = step_fn(state, strategy.put_batch(batch), placed_weights)
  got = jax.device_get(strategy.get_state(state))
  # The perceptual term's gradients at initialisation are ill-conditioned: scaling every initial
  # parameter by (1 + 2^-23 N(0, 1)) moves one device's update by up to 0.4% of its tensor's
  # largest (measured), so each update is compared to within 1% of its tensor's largest.
  assert_steps_close(got.params, expected.params, init.params, kink=0.01, what="params")
  state, _ = step_fn(state, strategy.put_batch(next(batches)), placed_weights)
  after = jax.device_get(strategy.get_state(placed_weights))
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(source)):
    np.testing.assert_array_equal(a, b)


def test_perceptual_features_are_the_classifier_features():
  """The perceptual term reads the layer ClassifierFeatures gives (same inputs, same weights)."""
  c = tiny("pix2pix_edges2fashion", **PERCEPTUAL)
  method = runs.build_method(c)
  weights = _frozen_weights(method)
  examples = data.load_config(c.dataset)
  a, b = method.images(examples["A"][:4]), method.images(examples["B"][:4])
  ours = float(jax.jit(method.perceptual)(weights, a, b))
  lo, hi = method.value_range
  reference = runs.load_classifier(CLASSIFIER)
  fa, fb = (reference(np.asarray((x - lo) / (hi - lo)))["features"] for x in (a, b))
  assert ours == pytest.approx(float(np.mean(np.abs(fa - fb))), rel=1e-5)


def test_a_slot_reads_a_reference_pth_into_its_architecture(tmp_path):
  """A slot that takes a ``.pth`` builds the architecture it is read into; weights of another
  architecture are one line."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from genjax import torch_weights  # pylint: disable=g-import-not-at-top
  from genjax.methods.base import FrozenSlot  # pylint: disable=g-import-not-at-top
  from genjax.models import translation_nets  # pylint: disable=g-import-not-at-top

  def generator(ngf, seed=0):
    return translation_nets.define_G("unet_32", 1, 1, ngf=ngf, rngs=nnx.Rngs(seed))

  class StandIn:  # what for_config reads of a method: its slots, kernels, and what build reads
    FROZEN = {"generator": FrozenSlot("a pretrained generator", build=lambda m: generator(m.ngf))}
    conv_backend = kernels.XLA
    ngf = 8
  reference = generator(8, seed=1)
  torch_weights.write_state_dict(tmp_path / "latest_net_G.pth", torch_weights.to_torch(reference))
  config = {"frozen": {"generator": str(tmp_path / "latest_net_G.pth")}}
  loaded = frozen.for_config(config, StandIn())["generator"]
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 1))
  np.testing.assert_allclose(loaded.module(x), nnx.view(reference, use_running_average=True)(x),
                             rtol=1e-5, atol=1e-5)
  # a frozen network runs on the kernels of the method that uses it
  StandIn.conv_backend = kernels.ConvBackend("onednn")
  module = frozen.for_config(config, StandIn())["generator"].module
  assert {m.conv_backend for _, m in nnx.iter_graph(module) if hasattr(m, "conv_backend")} == {
      StandIn.conv_backend}
  StandIn.ngf = 4
  with pytest.raises(CheckpointError, match=r"^config.frozen.generator: ") as e:
    frozen.for_config(config, StandIn())
  assert "\n" not in str(e.value)
