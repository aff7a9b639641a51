"""The infogan_fashion_mnist config on MNIST."""

from experiments.configs import infogan_fashion_mnist


def get_config():
  return infogan_fashion_mnist.get_config("mnist")
