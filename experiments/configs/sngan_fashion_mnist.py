"""SNGAN (Miyato et al. 2018) on Fashion-MNIST: spectrally normalised discriminator, hinge loss,
the paper's setting C (Adam 2e-4, betas 0.5/0.999, one discriminator step per generator step).
DCGAN's widths (64, experiments/configs/_zoo.py): at 3000 steps they took SNGAN's classifier-FID
from width 32's 4-5x DCGAN's to 2.2x (MNIST) and 2.7x (Fashion-MNIST); experiments/RESULTS.md."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("sngan", dataset, num_steps=15000)
  c.method.loss = "hinge"
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  return c
