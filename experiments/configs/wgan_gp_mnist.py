"""The wgan_gp_fashion_mnist config on MNIST."""

from experiments.configs import wgan_gp_fashion_mnist


def get_config():
  return wgan_gp_fashion_mnist.get_config("mnist")
