"""AC-GAN (Odena et al. 2017) on Fashion-MNIST: one-hot class input to the generator, an
auxiliary classifier head on the discriminator, non-saturating loss plus the class
cross-entropy."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("acgan", dataset, num_steps=15000, width=32)
  c.model.latent_dim = 100
  c.model.num_classes = 10
  c.method.loss = "non_saturating"
  c.method.aux_weight = 1.0
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  return c
