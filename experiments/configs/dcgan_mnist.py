"""DCGAN on MNIST at 32x32 (28 padded)."""

from experiments.configs import dcgan_fashion_mnist


def get_config():
  c = dcgan_fashion_mnist.get_config()
  c.dataset.name = "mnist"
  return c
