"""Pix2Pix on edges2fashion (offline: Fashion-MNIST garments from their edge maps), 32 x 32
(28 padded): unet_32 + basic PatchGAN with BatchNorm at ngf = ndf = 32 (the reference's 64
quadruples the cost for 28-pixel garments: 1.2 against 5 steps/s on 2 cores), the reference's
losses and optimiser, batch 64. Ablations as in the paper's table 1: --config.method.gan_weight=0 (L1 alone),
--config.method.lambda_L1=0 (cGAN alone).
"""

from genjax.config import base_config


def get_config():
  c = base_config("pix2pix")
  c.dataset.name = "edges2fashion"
  c.dataset.image_size = 32
  c.model.netG = "unet_32"
  c.model.ngf = 32
  c.model.ndf = 32
  c.batch_size = 64
  c.num_steps = 4000
  c.optimizer.schedule = "hold_linear"
  c.optimizer.hold_steps = 2000
  c.num_samples = 8
  c.sample_every = 1000
  c.checkpoint_every = 1000
  # Classifier-FID/KID of G(edges) against the Fashion-MNIST-like garments, and L1/PSNR/SSIM
  # against the true garments (experiments/classifiers/fashion_mnist).
  c.eval.weights = "experiments/classifiers/fashion_mnist"
  c.eval.every = 2000
  c.eval.num_samples = 2048
  return c
