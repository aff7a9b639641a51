"""WGAN-GP (Gulrajani et al. 2017) on Fashion-MNIST: DCGAN's networks, without BatchNorm in the
critic (whose convs then have biases) and with it in the generator, as in the paper's DCGAN
experiments; the Wasserstein loss with the gradient penalty (lambda = 10) on interpolates, 5
critic steps per generator step, Adam(1e-4, 0.0, 0.9). ``num_steps`` counts critic steps: 75000,
DCGAN's 15000 generator updates (as WGAN's)."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("dcgan", dataset, num_steps=75000)
  c.model.latent_dim = 100
  c.model.d_norm = "none"
  c.method.loss = "wasserstein"
  c.method.penalty = "gp"
  c.method.penalty_weight = 10.0
  c.method.n_critic = 5
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  return c
