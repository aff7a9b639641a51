"""Denoising autoencoder on MNIST."""

from experiments.configs import dae_fashion_mnist


def get_config():
  c = dae_fashion_mnist.get_config()
  c.dataset.name = "mnist"
  return c
