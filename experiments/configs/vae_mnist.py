"""VAE on dynamically binarised MNIST, the standard setting for likelihood numbers."""

from experiments.configs import vae_fashion_mnist


def get_config():
  c = vae_fashion_mnist.get_config()
  c.dataset.name = "mnist"
  c.method.binarize = True
  return c
