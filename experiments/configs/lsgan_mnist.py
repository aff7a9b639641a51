"""The lsgan_fashion_mnist config on MNIST."""

from experiments.configs import lsgan_fashion_mnist


def get_config():
  return lsgan_fashion_mnist.get_config("mnist")
