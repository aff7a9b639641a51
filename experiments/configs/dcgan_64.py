"""The exact pytorch/examples DCGAN at 64x64 (G 3,576,704 / D 2,765,568 params with 3 channels),
here on Fashion-MNIST resized to 64 (1 channel). Its use is benchmarking against PyTorch."""

from experiments.configs import dcgan_fashion_mnist


def get_config():
  c = dcgan_fashion_mnist.get_config()
  c.dataset.image_size = 64
  c.dataset.resize = "resize"
  c.eval.every = 0  # the domain classifier is trained at 32 px
  return c
