"""The acgan_fashion_mnist config on MNIST."""

from experiments.configs import acgan_fashion_mnist


def get_config():
  return acgan_fashion_mnist.get_config("mnist")
