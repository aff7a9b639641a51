"""Denoising autoencoder on Fashion-MNIST: Gaussian noise of std 0.3 (in [0, 1] units).

Other corruptions: --config.method.corruption=salt_pepper|mask|dropout with
--config.method.corruption_level=<pixel probability or patch side fraction>.
"""

from experiments.configs import ae_fashion_mnist


def get_config():
  c = ae_fashion_mnist.get_config()
  c.method.corruption = "gaussian"
  c.method.corruption_level = 0.3
  return c
