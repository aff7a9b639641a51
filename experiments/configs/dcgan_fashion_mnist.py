"""DCGAN on Fashion-MNIST at 32x32 (28 padded), pytorch/examples hyper-parameters."""

from genjax.config import base_config


def get_config():
  c = base_config("dcgan")
  c.dataset.name = "fashion_mnist"
  c.dataset.image_size = 32
  c.model.latent_dim = 100
  c.model.ngf = 64
  c.model.ndf = 64
  c.batch_size = 64
  c.num_steps = 15000  # converged: experiments/configs/_zoo.py
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  # Classifier-FID/KID against the test split (experiments/classifiers/<dataset>).
  c.eval.every = 1000
  c.eval.num_samples = 2048
  c.eval.metrics = "fid,kid"
  return c
