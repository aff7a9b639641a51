"""Convolutional autoencoder on MNIST: the Fashion-MNIST config on another dataset."""

from experiments.configs import ae_fashion_mnist


def get_config():
  c = ae_fashion_mnist.get_config()
  c.dataset.name = "mnist"
  return c
