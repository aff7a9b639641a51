"""Pix2Pix at the reference's defaults (pytorch-CycleGAN-and-pix2pix, train.py --model pix2pix)
on a folder of aligned AB images, e.g. facades: unet_256 + the basic PatchGAN with BatchNorm,
batch 1, resize to 286 and random crop to 256 with flips, vanilla GAN loss + 100 x L1,
Adam(2e-4, 0.5), 100 epochs constant then 100 decaying linearly to 0.

  python -m genjax.cli.train --config=experiments/configs/pix2pix_facades.py --workdir=runs/facades \\
      --config.dataset.path=/data/facades
"""

from genjax.config import base_config

EXAMPLES = 400  # facades/train; set for another dataset: an epoch is EXAMPLES / batch steps


def get_config():
  c = base_config("pix2pix")
  c.dataset.name = "image_folder"
  c.dataset.layout = "aligned"
  c.dataset.direction = "BtoA"  # facades: labels (B) -> photos (A), as in the reference's script
  c.dataset.preprocess = "resize_and_crop"
  c.dataset.load_size = 286
  c.dataset.crop_size = 256
  c.dataset.flip = True
  c.batch_size = 1
  epochs = EXAMPLES // c.batch_size
  c.num_steps = 200 * epochs
  c.optimizer.schedule = "hold_linear"
  c.optimizer.hold_steps = 100 * epochs
  c.num_samples = 8
  c.sample_every = 10 * epochs
  c.checkpoint_every = 5 * epochs
  c.log_every = 100
  return c
