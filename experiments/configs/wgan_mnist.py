"""The wgan_fashion_mnist config on MNIST."""

from experiments.configs import wgan_fashion_mnist


def get_config():
  return wgan_fashion_mnist.get_config("mnist")
