"""f-AnoGAN's encoder on one Fashion-MNIST class: experiments/configs/fanogan_mnist.py on
another dataset of the same size, after a WGAN-GP on the same class
(experiments/configs/wgan_gp_fashion_mnist.py)."""

from experiments.configs import fanogan_mnist


def get_config():
  return fanogan_mnist.get_config("fashion_mnist")
