"""SNGAN (Miyato et al. 2018) on Fashion-MNIST: spectrally normalised discriminator, hinge loss,
the paper's setting C (Adam 2e-4, betas 0.5/0.999, one discriminator step per generator step).
DCGAN's widths (64, experiments/configs/_zoo.py): at 3000 steps they took SNGAN's classifier-FID
from width 32's 4-5x DCGAN's to 2.2x (MNIST) and 2.7x (Fashion-MNIST); experiments/RESULTS.md.

Samples and evaluation come from an EMA of the generator (decay 0.999, as SAGAN's), which the
paper does not use: without it the last iterate moved with the last updates (MNIST seed 1: 5.85
at step 12000, 10.28 at 15000) and the three MNIST seeds ended at 2.07x DCGAN's; the EMA of
that same trajectory (averaging leaves the training as it is) ended at 3.08 (RESULTS.md)."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("sngan", dataset, num_steps=15000)
  c.method.loss = "hinge"
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  c.optimizer.b2 = 0.999
  c.ema_decay = 0.999
  return c
