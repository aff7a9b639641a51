"""Config schema and validation: every experiment config is valid; bad values fail in one line."""

import importlib
import pathlib

import pytest

from genjax import config as config_lib
from genjax import methods
from genjax import models
from genjax.errors import ConfigError
from tests.conftest import tiny_config

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "experiments" /
                                  "configs").glob("*_*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("name", CONFIGS)
def test_experiment_configs_validate(name, tmp_path):
  c = importlib.import_module(f"experiments.configs.{name}").get_config()
  if c.dataset.name == "image_folder":  # the user's folder, given on the command line
    c.dataset.path = str(tmp_path)
  # runs the config always needs (f-AnoGAN's GAN), given on the command line: validate checks
  # they are named, the launcher loads them
  for slot in methods.get(models.get(c.model.name).METHOD).required_frozen(c):
    c.frozen[slot] = str(tmp_path / slot)
  config_lib.validate(c)
  assert c.is_locked


def test_every_family_has_configs_for_mnist_and_fashion_mnist():
  for family in ("ae", "dae", "vae", "dcgan", "wgan", "wgan_gp", "lsgan", "hinge", "sngan",
                 "sagan", "cgan", "acgan", "infogan", "sgan"):
    for dataset in ("mnist", "fashion_mnist"):
      assert f"{family}_{dataset}" in CONFIGS


def test_locked_config_rejects_unknown_keys():
  c = config_lib.base_config("dcgan")
  with pytest.raises(AttributeError, match="batch_size"):
    c.bach_size = 3
  with pytest.raises(AttributeError):
    c.model.ngff = 3


@pytest.mark.parametrize("key,value,match", [
    ("model.name", "nope", "unknown model 'nope'; valid names: ae, vae, dcgan"),
    ("dataset.name", "nope", "unknown dataset 'nope'; valid names: mnist"),
    ("batch_size", 0, "config.batch_size must be an integer >= 1"),
    ("num_steps", -5, "config.num_steps must be an integer >= 1"),
    ("parallel", "tpu", "config.parallel must be one of mesh, pmap"),
    ("dtype", "float16", "config.dtype must be one of float32, bfloat16"),
    ("ema_decay", 1.0, r"config.ema_decay must be in \[0, 1\)"),
    ("optimizer.name", "lion", "config.optimizer.name must be one of adam"),
    ("optimizer.learning_rate", 0.0, "learning_rate must be > 0"),
    ("optimizer.eps", -1e-8, r"^config.optimizer.eps must be > 0 and grad_clip_norm >= 0 \(0: no "
                             r"clipping\), got -1e-08, 0.0$"),
    ("optimizer.grad_clip_norm", -1.0, r"grad_clip_norm >= 0 \(0: no clipping\), got 1e-08, -1.0"),
    ("model.ngf", 0, r"^config.model.ngf must be an integer >= 1, got 0$"),  # a ZeroDivisionError
    ("model.latent_dim", 0, "config.model.latent_dim must be an integer >= 1, got 0"),
    ("dataset.image_size", 16, "cannot pad synthetic"),
    ("dataset.value_range", (1.0, 0.0), "lo < hi"),
    ("method.loss", "nope", "config.method.loss must be one of non_saturating"),
    ("resume_skip_corrupt", None, "config.resume_skip_corrupt must be True or False, got None"),
])
def test_validation_errors_are_one_line(key, value, match):
  c = tiny_config("dcgan")
  c.unlock()
  node = c
  *path, last = key.split(".")
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(ConfigError, match=match) as info:
    config_lib.validate(c)
  assert "\n" not in str(info.value)


def test_a_family_count_may_be_zero_and_never_negative():
  config_lib.validate(tiny_config("infogan", **{"model.num_continuous": 0}))
  with pytest.raises(ConfigError, match=r"^config.model.num_continuous must be an integer >= 0, "
                                        r"got -1$"):
    config_lib.validate(tiny_config("infogan", **{"model.num_continuous": -1}))


def test_autoencoder_specific_validation():
  c = tiny_config("vae")
  c.dataset.value_range = (-1.0, 1.0)
  with pytest.raises(ConfigError, match="Bernoulli likelihood .* needs pixels in"):
    config_lib.validate(c)
  c = tiny_config("ae", **{"method.corruption": "blur"})
  with pytest.raises(ConfigError, match="corruption must be one of none, gaussian"):
    config_lib.validate(c)


def test_unknown_model_keys_are_rejected():
  c = tiny_config("dcgan")
  c.unlock()
  c.model.depth = 3
  with pytest.raises(ConfigError, match="unknown key config.model.depth; valid keys: "):
    config_lib.validate(c)
