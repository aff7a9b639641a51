"""The sagan_fashion_mnist config on MNIST."""

from experiments.configs import sagan_fashion_mnist


def get_config():
  return sagan_fashion_mnist.get_config("mnist")
