"""The sngan_fashion_mnist config on MNIST."""

from experiments.configs import sngan_fashion_mnist


def get_config():
  return sngan_fashion_mnist.get_config("mnist")
