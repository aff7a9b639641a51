"""LSGAN (Mao et al. 2017, 0-1-1 coding) on Fashion-MNIST with DCGAN's networks."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("dcgan", dataset, num_steps=15000)
  c.model.latent_dim = 100
  c.method.loss = "least_squares"
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  return c
