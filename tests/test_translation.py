"""Image-to-image translation: Pix2Pix and CycleGAN train through the one trainer on paired,
unpaired and folder data; the pool, the schedule, resume, the translate and export commands, and
the one-line errors of bad input."""

import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import runs
from genjax import torch_weights
from genjax import train
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.methods import base
from genjax.methods import translation
from tests.conftest import KINK
from tests.conftest import REPO
from tests.conftest import apply_overrides
from tests.conftest import assert_steps_close
from tests.conftest import xla_flags

TINY = {"model.ngf": 8, "model.ndf": 8, "batch_size": 8, "num_steps": 4, "log_every": 2,
        "sample_every": 4, "checkpoint_every": 2, "num_samples": 8, "compilation_cache_dir": "",
        "eval.every": 0}
# CycleGAN's tests of the method (pools, domains, resume, devices, evaluation) use a U-Net: its
# step compiles in a third of resnet_6blocks' time. The ResNet generator is the reference's in
# test_translation_nets, and trains in the reference's step in test_benchmarks' peer step.
SMALL_CYCLEGAN = {"model.netG": "unet_32", "model.n_layers_D": 2}


def tiny(name: str, **overrides):
  c = importlib.import_module(f"experiments.configs.{name}").get_config()
  c.optimizer.schedule = "constant"
  apply_overrides(c, {**TINY, **overrides})
  config_lib.validate(c)
  return c


def write_aligned(root, split, n, size=(20, 10), seed=0):
  """``n`` AB images (A left, B right) of (2 * h, h) pixels."""
  rng = np.random.default_rng(seed)
  folder = root / split
  folder.mkdir(parents=True, exist_ok=True)
  w, h = size
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(folder / f"{i:03d}.png")


def write_domain(folder, n, size=10, seed=0, mode="RGB"):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  shape = (size, size, 3) if mode == "RGB" else (size, size)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(folder / f"{i:03d}.jpg")


# --- the two families on the derived datasets ------------------------------------------------

def test_pix2pix_trains_end_to_end(tmp_path):
  result = train.train_and_evaluate(tiny("pix2pix_edges2fashion"), str(tmp_path))
  assert result.step == 4 and all(np.isfinite(v) for v in result.metrics.values())
  assert {"l1", "gan_G", "loss_D", "loss_g"} <= set(result.metrics)
  assert result.state.extra == {}
  grid = np.asarray(Image.open(tmp_path / "samples" / "translations.png"))
  assert grid.ndim == 2 and grid.std() > 0  # rows of (A | G(A) | B), grayscale


def test_cyclegan_resumes_exactly_with_its_pools_and_domains(tmp_path):
  """Four steps at once equal two steps, a stop, and two more: the pools of past fakes and both
  domains' data positions come back from the checkpoint."""
  straight = train.train_and_evaluate(tiny("cyclegan_colored_mnist", **SMALL_CYCLEGAN),
                                      str(tmp_path / "straight"))
  train.train_and_evaluate(tiny("cyclegan_colored_mnist", num_steps=2, **SMALL_CYCLEGAN),
                           str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(tiny("cyclegan_colored_mnist", **SMALL_CYCLEGAN),
                                     str(tmp_path / "resumed"))
  assert straight.step == resumed.step == 4
  assert checkpoint.fingerprint(straight.state) == checkpoint.fingerprint(resumed.state)
  assert set(straight.state.extra) == {"pool_D_A", "pool_D_B"}
  assert int(straight.state.extra["pool_D_A"]["count"]) == 4 * 8  # not full yet: all kept
  meta = checkpoint.Checkpointer(str(tmp_path / "straight" / "checkpoints"), keep=3).read_meta(4)
  assert set(meta["data_epochs"]) == {"A+label_A", "B+label_B"}
  assert {"cycle_A", "cycle_B", "gan_G_A", "gan_G_B", "loss_D_A", "loss_D_B"} <= set(
      straight.metrics)
  grid = np.asarray(Image.open(tmp_path / "straight" / "samples" / "translations_BtoA.png"))
  assert grid.shape[-1] == 3 and grid.std() > 0


def test_cyclegan_domains_are_shuffled_independently():
  examples = data.load("colored_mnist", "train")
  assert examples.groups == (("A", "label_A"), ("B", "label_B"))
  it = data.BatchIterator(examples, 8, seed=0, groups=examples.groups)
  batch = next(it)
  first_a = it.permutation(0)[:8]
  np.testing.assert_array_equal(batch["label_A"], examples["label_A"][first_a])
  other = np.random.default_rng([0, 0, 1]).permutation(len(examples["B"]))[:8]
  np.testing.assert_array_equal(batch["label_B"], examples["label_B"][other])
  assert not np.array_equal(first_a, other)


def test_pool_is_the_references():
  """The pool against a direct transcription of the reference's ImagePool.query, with the same
  draws: fills first, then swaps half the time."""
  pool = translation.ImagePool(3, None)
  state = pool.init((1, 1, 1))
  key = jax.random.PRNGKey(0)
  kept, shown_all = [], []
  for step in range(4):
    images = jnp.arange(2 * step, 2 * step + 2, dtype=jnp.float32).reshape(2, 1, 1, 1) + 1
    k = jax.random.fold_in(key, step)
    swap = np.asarray(jax.random.uniform(jax.random.fold_in(k, 0), (2,)) < 0.5)
    slot = np.asarray(jax.random.randint(jax.random.fold_in(k, 1), (2,), 0, 3))
    shown, state = pool.query(state, images, k)
    expected = []
    for image, use, at in zip(np.asarray(images).ravel(), swap, slot):
      if len(kept) < 3:
        kept.append(image)
        expected.append(image)
      elif use:
        expected.append(kept[at])
        kept[at] = image
      else:
        expected.append(image)
    np.testing.assert_array_equal(np.asarray(shown).ravel(), expected)
    shown_all.extend(expected)
  np.testing.assert_array_equal(np.asarray(state["images"]).ravel(), kept)
  assert int(state["count"]) == 3
  assert shown_all != list(range(1, 9))  # some past fakes were shown


def test_update_orders_and_loss_weights():
  """Pix2Pix's G step sees the updated D ('d_first'); with gan_weight 0 (L1 alone) the G update
  follows |G(A) - B| only, and L1 alone leaves loss_g = 100 x l1."""
  c = tiny("pix2pix_edges2fashion", **{"method.gan_weight": 0.0})
  method = runs.build_method(c)
  state = jax.jit(method.init)(jax.random.PRNGKey(0))
  batch = next(data.BatchIterator(data.load_config(c.dataset), 8, seed=0))
  _, metrics = jax.jit(method.step)(state, batch)
  assert float(metrics["loss_g"]) == pytest.approx(100 * float(metrics["l1"]), rel=1e-6)
  with pytest.raises(ConfigError, match="config.method.update_order must be one of d_first, "
                                        "g_first, got 'both'"):
    tiny("pix2pix_edges2fashion", **{"method.update_order": "both"})


def test_hold_linear_schedule_is_the_references_per_step():
  c = tiny("pix2pix_edges2fashion", num_steps=10,
           **{"optimizer.schedule": "hold_linear", "optimizer.hold_steps": 6})
  lr = base.make_schedule(c.optimizer, c.num_steps, 2e-4)
  assert [float(lr(s)) for s in (0, 5, 6, 8, 10)] == pytest.approx(
      [2e-4, 2e-4, 2e-4, 1e-4, 0.0])
  with pytest.raises(ConfigError, match="hold_steps must be in"):
    tiny("pix2pix_edges2fashion", **{"optimizer.schedule": "hold_linear",
                                     "optimizer.hold_steps": 4})


def test_test_time_mode_is_an_option():
  """The reference's test.py keeps dropout and batch statistics on unless --eval; so does
  sample_train_mode, and turning it off gives deterministic inference-mode samples."""
  sizes = {"dataset.image_size": 64, "model.netG": "unet_64"}  # unet_64 has a dropout level
  c = tiny("pix2pix_edges2fashion", **sizes)
  method = runs.build_method(c)
  state = jax.jit(method.init)(jax.random.PRNGKey(0))
  a = method.images(data.load_config(c.dataset)["A"][:4])
  sample = jax.jit(method.sample)
  one, two = (sample(state, a, jax.random.PRNGKey(i)) for i in (1, 2))
  assert not np.allclose(one, two)  # dropout
  assert not np.allclose(sample(state, a[:2], jax.random.PRNGKey(1)), one[:2])  # batch stats
  c = tiny("pix2pix_edges2fashion", **sizes, **{"method.sample_train_mode": False})
  sample = jax.jit(runs.build_method(c).sample)
  one, two = (sample(state, a, jax.random.PRNGKey(i)) for i in (1, 2))
  np.testing.assert_array_equal(one, two)
  np.testing.assert_allclose(sample(state, a[:2], None), one[:2], rtol=1e-5, atol=1e-6)


# --- users' folders ------------------------------------------------------------------------

def test_pix2pix_and_cyclegan_train_on_image_folders(tmp_path):
  write_aligned(tmp_path / "facades", "train", 8)
  write_domain(tmp_path / "h2z" / "trainA", 8, seed=1)
  write_domain(tmp_path / "h2z" / "trainB", 12, seed=2)
  common = {"dataset.load_size": 40, "dataset.crop_size": 32, "num_steps": 1,
            "sample_every": 1, "checkpoint_every": 1, "log_every": 1}
  p = tiny("pix2pix_facades", **common, **{"dataset.path": str(tmp_path / "facades"),
                                            "model.netG": "unet_32"})
  result = train.train_and_evaluate(p, str(tmp_path / "p"))
  assert result.step == 1 and all(np.isfinite(v) for v in result.metrics.values())
  c = tiny("cyclegan_horse2zebra", **common, **{"dataset.path": str(tmp_path / "h2z"),
                                                 "model.netG": "unet_32", "model.ngf": 4,
                                                 "model.ndf": 4, "method.pool_size": 4})
  result = train.train_and_evaluate(c, str(tmp_path / "c"))
  assert result.step == 1 and "identity_A" in result.metrics
  grid = np.asarray(Image.open(tmp_path / "c" / "samples" / "translations_BtoA.png"))
  assert grid.shape[-1] == 3 and grid.std() > 0


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
  (tmp_path / "empty" / "train").mkdir(parents=True)
  cases = [
      (tiny("pix2pix_facades", **{"dataset.path": str(tmp_path / "nowhere")}), DataError),
      (tiny("pix2pix_facades", **{"dataset.path": str(tmp_path / "empty")}), DataError),
  ]
  for c, error in cases:
    with pytest.raises(error) as e:
      train.train_and_evaluate(c, str(tmp_path / "run"))
    assert "\n" not in str(e.value)
  assert not (tmp_path / "run" / "checkpoints").exists() or not os.listdir(
      tmp_path / "run" / "checkpoints")
  with pytest.raises(ConfigError, match="lambda_L1 needs paired examples"):
    tiny("cyclegan_colored_mnist", **{"method.lambda_L1": 100.0})
  with pytest.raises(ConfigError, match="A has 1 channels but B 3: set "
                                        "--config.method.lambda_identity=0"):
    runs.build_method(tiny("cyclegan_colored_mnist", **{"method.lambda_identity": 0.5}))
  c = config_lib.base_config("pix2pix")
  c.dataset.name = "mnist"
  with pytest.raises(ConfigError, match="model 'pix2pix' trains on examples with A, B, and "
                                        "dataset 'mnist' has image, label"):
    config_lib.validate(c)
  c = config_lib.base_config("pix2pix")
  c.dataset.name = "image_folder"
  with pytest.raises(ConfigError, match="needs its root folder"):
    config_lib.validate(c)


# --- weights in and out, and the translate command ---------------------------------------------

def _run_cli(module, *flags):
  env = {**os.environ, "XLA_FLAGS": xla_flags(1),
         "PYTHONPATH": str(REPO)}
  return subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, env=env, text=True,
                        capture_output=True, timeout=300)


def test_export_torch_translate_and_frozen_sources_agree(tmp_path):
  """A trained run, its reference-format .pth export, and its .npz export are the same
  generator: translating a folder with each gives the same images."""
  c = tiny("pix2pix_edges2fashion", num_steps=2, **{"method.sample_train_mode": False})
  train.train_and_evaluate(c, str(tmp_path / "run"))
  out = _run_cli("genjax.cli.export", f"--workdir={tmp_path / 'run'}", "--format=torch",
                 f"--out={tmp_path / 'pth'}")
  assert out.returncode == 0, out.stderr[-2000:]
  files = json.loads(out.stdout.strip().splitlines()[-1])["files"]
  assert set(files) == {"G", "D"}
  state = torch_weights.read_state_dict(files["G"])
  assert "model.model.0.weight" in state  # the reference's keys
  frozen.export(str(tmp_path / "run"), str(tmp_path / "g.npz"))

  edges = data.load("edges2fashion", "test")["A"][:5]
  (tmp_path / "in").mkdir()
  for i, image in enumerate(edges):
    Image.fromarray(image[..., 0]).save(tmp_path / "in" / f"{i}.png")
  outputs = {}
  for name, weights, extra in (
      ("run", str(tmp_path / "run"), []),
      ("npz", str(tmp_path / "g.npz"), []),
      ("pth", files["G"], ["--netG=unet_32", "--ngf=8", "--input_nc=1", "--output_nc=1",
                           "--load_size=32"])):
    result = _run_cli("genjax.cli.translate", f"--weights={weights}",
                      f"--input_dir={tmp_path / 'in'}", f"--output_dir={tmp_path / name}",
                      "--notrain_mode", *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "translated 5/5" in result.stderr
    outputs[name] = np.stack([np.asarray(Image.open(tmp_path / name / f"{i}.png"))
                              for i in range(5)])
  assert outputs["run"].shape == (5, 32, 32) and outputs["run"].std() > 0
  np.testing.assert_array_equal(outputs["run"], outputs["npz"])
  # Same weights; the .pth route runs the reference's value range and layout: within a level.
  assert np.abs(outputs["run"].astype(int) - outputs["pth"]).max() <= 1


def test_frozen_sources_fail_in_one_line(tmp_path):
  with pytest.raises(CheckpointError, match="no checkpoints in"):
    frozen.load(str(tmp_path / "nothing"))
  with pytest.raises(CheckpointError, match="no weights file"):
    frozen.load(str(tmp_path / "latest_net_G.pth"), build=lambda: None)
  with pytest.raises(CheckpointError, match="is a PyTorch state_dict: name its architecture"):
    frozen.load(str(tmp_path / "latest_net_G.pth"))
  result = _run_cli("genjax.cli.translate", f"--weights={tmp_path / 'nothing'}",
                    f"--input_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 2 and result.stderr.strip().startswith("genjax: error: no ")
  assert not (tmp_path / "out").exists()


def test_translate_feeds_each_generator_its_source_domain_and_refuses_other_networks(tmp_path):
  """CycleGAN on colored_mnist: G_A takes the 1-channel digits, G_B the 3-channel colourings
  (it used to be fed A's channels); a discriminator, another family's network, a batch size
  below 1 and an output folder that is a file are one line each, before anything is written."""
  from genjax import folder_translation  # pylint: disable=g-import-not-at-top
  from tests.conftest import tiny_config  # pylint: disable=g-import-not-at-top
  run = str(tmp_path / "cyc")
  train.train_and_evaluate(tiny("cyclegan_colored_mnist", num_steps=1, **SMALL_CYCLEGAN), run)
  (tmp_path / "in").mkdir()
  colour = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
  for i, image in enumerate(colour):
    Image.fromarray(image).save(tmp_path / "in" / f"{i}.png")
  for role, channels in (("G_A", 3), ("G_B", 1)):
    out = tmp_path / role
    assert folder_translation.translate(f"{run}#{role}", str(tmp_path / "in"), str(out),
                                        train_mode=False)["images"] == 3
    image = np.asarray(Image.open(out / "0.png"))
    assert image.shape == ((32, 32, 3) if channels == 3 else (32, 32)), (role, image.shape)
  dcgan = str(tmp_path / "dcgan")
  train.train_and_evaluate(tiny_config("dcgan", num_steps=1), dcgan)
  a_file = tmp_path / "out.txt"
  a_file.write_text("")
  for weights, kwargs, error, message in (
      (f"{run}#D_A", {}, ConfigError, r"is the 'D_A' network of a 'cyclegan' run: translate "
                                      r"takes an image-to-image generator \(G_A, G_B\)$"),
      (dcgan, {}, ConfigError, r"dcgan is a 'dcgan' network: translate takes an image-to-image "
                               r"generator \(a Pix2Pix or CycleGAN run\)$"),
      (run, {"batch_size": 0}, ConfigError, r"^--batch_size must be >= 1, got 0$"),
      (run, {"output_dir": str(a_file)}, ConfigError, r"out.txt \(it is a file\)$")):
    with pytest.raises(error, match=message):
      folder_translation.translate(weights, str(tmp_path / "in"),
                                   kwargs.pop("output_dir", str(tmp_path / "refused")), **kwargs)
  assert not (tmp_path / "refused").exists() and a_file.read_text() == ""


@pytest.mark.parametrize("strategy_name", ["mesh", "pmap"])
def test_one_cyclegan_step_on_8_devices_equals_one_device(strategy_name):
  """Both generators, both discriminators and both pools (gathered over the devices under pmap)
  match single-device training on the global batch."""
  from genjax import parallel  # pylint: disable=g-import-not-at-top
  # The pool holds 4: the first 4 fakes of the batch fill it, the next 4 may be swapped.
  c = tiny("cyclegan_colored_mnist", **{"optimizer.name": "sgd", "optimizer.learning_rate": 0.05,
                                         "optimizer.b1": 0.0, "method.pool_size": 4,
                                         **SMALL_CYCLEGAN})
  examples = data.load_config(c.dataset)
  batch = next(data.BatchIterator(examples, 8, seed=0, groups=examples.groups))
  single = runs.build_method(c)
  init = jax.device_get(single.init(jax.random.PRNGKey(0)))
  expected, _ = jax.device_get(jax.jit(single.step)(init, batch))
  strategy = parallel.make_strategy(strategy_name)
  method = runs.build_method(c, strategy.axis_name)
  placed = strategy.put_state(method.init(jax.random.PRNGKey(0)))
  placed, _ = strategy.compile(method.step)(placed, strategy.put_batch(batch))
  got = jax.device_get(strategy.get_state(placed))
  # Rounding: the 8 devices sum in another order, oneDNN's AVX2 kernels round differently from
  # its AVX-512 ones (up to 3.2e-6 with oneDNN capped at AVX2), and an activation's input near its
  # kink may take the other side (KINK). On an AVX2-only EPYC G_B's updates differed by up to
  # 2.2e-4 of their largest, past rtol and atol.
  for what in ("params", "extra"):
    assert_steps_close(getattr(got, what), getattr(expected, what), getattr(init, what),
                       rtol=1e-4, atol=1e-5, kink=KINK if what == "params" else 0, what=what)


def test_evaluation_scores_translations_against_the_true_target(tmp_path):
  """The evaluator's translation scores on colored_mnist's test split (40 samples in batches of
  16: the last one padded) equal the same scores computed here from G_A's translations of the
  split's first 40 digits: L1/PSNR/SSIM against their true colouring, the cycle error, and the
  MNIST classifier's accuracy on the translated digits (CycleGAN's generators are deterministic
  at test time; the metric functions themselves are checked against scikit-image in
  test_metrics)."""
  from genjax import evaluation  # pylint: disable=g-import-not-at-top
  from genjax.metrics import image  # pylint: disable=g-import-not-at-top
  c = tiny("cyclegan_colored_mnist", **SMALL_CYCLEGAN,
           **{"eval.num_samples": 40, "eval.num_real": 64, "eval.metrics": "kid",
              "eval.batch_size": 16, "eval.cache_dir": str(tmp_path)})
  method = runs.build_method(c)
  state = jax.jit(method.init)(jax.random.PRNGKey(3))
  out = evaluation.Evaluator(c, method)(state, jax.random.PRNGKey(1))
  assert out["num_samples"] == 40 and out["extractor"] == "classifier:mnist"

  split = data.load_config(c.dataset, "test")
  a, b = method.images(split["A"][:40]), method.images(split["B"][:40])
  fake = method.eval_generate(state, split["A"][:40])
  span = method.value_range[1] - method.value_range[0]
  g_b = method.generators[1]
  back, _ = method.translate(g_b, state.params[g_b], state.buffers[g_b], fake, None, train=False)
  expected = {"l1": image.l1(fake, b), "psnr": image.psnr(fake, b, span),
              "ssim": image.ssim(fake, b, span),
              "cycle_l1": image.l1(jnp.clip(back, *method.value_range), a)}
  for k, v in expected.items():
    assert out[k] == pytest.approx(float(np.mean(v)), rel=1e-5, abs=1e-6), k
  classifier = runs.load_classifier(REPO / "experiments" / "classifiers" / "mnist")
  logits = classifier((np.asarray(fake) - method.value_range[0]) / span)["logits"]
  assert out["label_accuracy"] == pytest.approx(
      np.mean(np.argmax(logits, -1) == split["label"][:40]))
