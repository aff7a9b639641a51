"""The hinge_fashion_mnist config on MNIST."""

from experiments.configs import hinge_fashion_mnist


def get_config():
  return hinge_fashion_mnist.get_config("mnist")
