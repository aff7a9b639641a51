"""Shared settings of the GAN zoo configs: 28x28 data padded to 32x32 in [-1, 1], batch 64,
DCGAN-style networks and classifier-FID/KID against the test split along the run.

The unconditional families have DCGAN's widths (64, pytorch/examples', as ``dcgan_<dataset>``),
so that the zoo table compares their objectives and regularisers on the networks of the
yardstick, not their capacities: width 32 had cost SNGAN about 60% of its FID gap to DCGAN
(experiments/RESULTS.md). The conditional families (cGAN, AC-GAN) keep the narrower width 32 they
were tuned at, where they are already several times under DCGAN's FID. The records made at width
32 pin it with ``--config.model.ngf=32 --config.model.ndf=32``.

Every family but InfoGAN and SGAN (which keep their papers' schedules) makes 15000 generator
updates, as ``dcgan_<dataset>``: 15000 steps (16 epochs at batch 64) for the families with one
discriminator step per update, 75000 critic steps for WGAN-GP (5 per update) and 80000 for WGAN (5
per update, 100 in its bursts); at 15000 critic steps their MNIST FIDs were 5x and 19x DCGAN's.
DCGAN's MNIST classifier-FID falls 76.7 -> 10.4 -> 7.9 -> 4.1 at steps 1000, 5000, 10000, 15000 and
moves within 4.06-4.68 over its last three evaluations (experiments/results/zoo_mnist.json). The
records made at 3000 (5000 for the WGANs) steps pin it with ``--config.num_steps``."""

from genjax.config import base_config


def zoo_config(family: str, dataset: str, num_steps: int, *, width: int = 64):
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
  c.eval.metrics = "fid,kid,modes"
  return c
