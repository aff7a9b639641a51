"""Convolutional autoencoder on Fashion-MNIST (28 padded to 32), Bernoulli likelihood."""

from genjax.config import base_config


def get_config():
  c = base_config("ae")
  c.dataset.name = "fashion_mnist"
  c.dataset.image_size = 32
  c.dataset.value_range = (0.0, 1.0)
  c.model.latent_dim = 32
  c.model.width = 32
  c.method.likelihood = "bernoulli"
  c.batch_size = 128
  c.num_steps = 2000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  return c
