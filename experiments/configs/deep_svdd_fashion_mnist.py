"""One-class Deep SVDD on one Fashion-MNIST class: the MNIST config
(experiments/configs/deep_svdd_mnist.py) on another dataset of the same size and class balance;
its encoder from experiments/configs/lenet_ae_fashion_mnist.py's run of the same class."""

from experiments.configs import deep_svdd_mnist


def get_config():
  c = deep_svdd_mnist.get_config()
  c.dataset.name = "fashion_mnist"
  return c
