"""cGAN with a projection discriminator (Miyato & Koyama 2018) on Fashion-MNIST: conditional
BatchNorm in the generator, a spectrally normalised projection discriminator, hinge loss."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("cgan", dataset, num_steps=15000, width=32)
  c.model.num_classes = 10
  c.method.loss = "hinge"
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  return c
