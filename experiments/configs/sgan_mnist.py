"""The sgan_fashion_mnist config on MNIST."""

from experiments.configs import sgan_fashion_mnist


def get_config():
  return sgan_fashion_mnist.get_config("mnist")
