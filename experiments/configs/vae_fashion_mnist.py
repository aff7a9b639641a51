"""VAE on Fashion-MNIST (28 padded to 32): Bernoulli decoder on grey levels, 16-d latent.

beta-VAE: --config.method.beta=4. Gaussian decoder: --config.method.likelihood=gaussian
--config.method.sigma=0.1.
"""

from genjax.config import base_config


def get_config():
  c = base_config("vae")
  c.dataset.name = "fashion_mnist"
  c.dataset.image_size = 32
  c.dataset.value_range = (0.0, 1.0)
  c.model.latent_dim = 16
  c.model.width = 32
  c.method.likelihood = "bernoulli"
  c.method.beta = 1.0
  c.batch_size = 128
  c.num_steps = 3000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  # Classifier-FID/KID against the test split (experiments/classifiers/<dataset>).
  c.eval.every = 1000
  c.eval.num_samples = 2048
  c.eval.metrics = "fid,kid"
  return c
