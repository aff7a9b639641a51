"""Class-conditional GANs generate the class they are asked for.

Small generators trained on MNIST (experiments/configs/{acgan,cgan}_mnist.py, exported with
``python -m genjax.cli.export --dtype=float16``) draw 100 samples per digit; the committed domain
classifier (experiments/classifiers/mnist, trained independently of any generator) must recognise
the conditioning digit in at least 90% of them.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genjax import frozen
from genjax import runs

DATA = pathlib.Path(__file__).parent / "data"
CLASSIFIER = pathlib.Path(__file__).parents[1] / "experiments" / "classifiers" / "mnist"


@pytest.mark.parametrize("name", ["acgan_mnist", "cgan_mnist"])
def test_conditional_samples_are_classified_as_their_label(name):
  generator = frozen.load(str(DATA / f"{name}_generator.npz"))
  method = generator.method
  labels = jnp.repeat(jnp.arange(10), 100)
  latent = dict(method.eval_inputs(jax.random.PRNGKey(0), 1000, None), labels=labels)
  graphdef, weights = nnx.split(generator.module)

  @jax.jit
  def sample(weights, latent):
    return method.generate(nnx.merge(graphdef, weights), latent)

  images = np.asarray(sample(weights, latent), np.float32)
  lo, hi = method.value_range
  classifier = runs.load_classifier(str(CLASSIFIER))
  logits = classifier(np.clip((images - lo) / (hi - lo), 0, 1))["logits"]
  predicted = np.argmax(logits, -1)
  per_class = [float(np.mean(predicted[labels == k] == k)) for k in range(10)]
  accuracy = float(np.mean(predicted == np.asarray(labels)))
  print(f"{name}: {accuracy:.3f} of samples classified as their label; per class {per_class}")
  assert accuracy >= 0.9, (accuracy, per_class)
  # A generator that ignored its label would score about 10%: shuffled labels must do badly.
  shuffled = np.random.default_rng(0).permutation(np.asarray(labels))
  assert float(np.mean(predicted == shuffled)) < 0.3
