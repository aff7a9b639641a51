"""InfoGAN (Chen et al. 2016) on Fashion-MNIST: the paper's MNIST networks at the native 28x28
(FC 1024 features shared by D and Q), 62 noise dimensions, one 10-way categorical code and two
U(-1, 1) continuous codes; lambda 1 for the categorical and 0.1 for the continuous codes; the
paper's learning rates (generator 1e-3, discriminator 2e-4, Adam beta1 0.5)."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("infogan", dataset, num_steps=10000)
  c.dataset.image_size = 0
  c.model.arch = "paper"
  c.model.latent_dim = 62
  c.model.num_categorical = 10
  c.model.num_continuous = 2
  c.method.loss = "non_saturating"
  c.method.info_weight = 1.0
  c.method.info_continuous_weight = 0.1
  c.method.d_learning_rate = 2e-4
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.5
  return c
