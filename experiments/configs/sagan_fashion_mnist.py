"""SAGAN (Zhang et al. 2019) on Fashion-MNIST: self-attention at 16x16 in both networks, spectral
normalisation in both, hinge loss, TTUR (generator 1e-4, discriminator 4e-4, Adam betas 0/0.9),
and an EMA of the generator (decay 0.999) for samples and evaluation."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("sagan", dataset, num_steps=15000)
  c.model.attention_size = 16
  c.method.loss = "hinge"
  c.method.d_learning_rate = 4e-4
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.0
  c.optimizer.b2 = 0.9
  c.ema_decay = 0.999
  return c
