"""Shared settings of the GAN zoo configs: 28x28 data padded to 32x32 in [-1, 1], batch 64,
narrow DCGAN-style networks (width 32; SNGAN 64) so that each run fits minutes on 2 CPU cores, and
classifier-FID/KID against the test split along the run."""

from genjax.config import base_config


def zoo_config(family: str, dataset: str, num_steps: int, *, width: int = 32):
  c = base_config(family)
  c.dataset.name = dataset
  c.dataset.image_size = 32
  if "ngf" in c.model:
    c.model.ngf = width
    c.model.ndf = width
  c.batch_size = 64
  c.num_steps = num_steps
  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 1
  # classifier-FID/KID (experiments/classifiers/<dataset>) about five times along the run and at
  # its end; the evaluation reads the state and draws its own key: it leaves the trajectory as is
  c.eval.every = max(1000, num_steps // 5)
  c.eval.num_samples = 2048
  c.eval.metrics = "fid,kid"
  return c
