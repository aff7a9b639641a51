"""Deep SVDD's LeNet autoencoder pre-training on one Fashion-MNIST class: the MNIST config
(experiments/configs/lenet_ae_mnist.py) on another dataset of the same size and class balance."""

from experiments.configs import lenet_ae_mnist


def get_config():
  c = lenet_ae_mnist.get_config()
  c.dataset.name = "fashion_mnist"
  return c
