"""The cgan_fashion_mnist config on MNIST."""

from experiments.configs import cgan_fashion_mnist


def get_config():
  return cgan_fashion_mnist.get_config("mnist")
