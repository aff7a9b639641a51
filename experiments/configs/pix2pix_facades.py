"""Pix2Pix at the reference's defaults (pytorch-CycleGAN-and-pix2pix, train.py --model pix2pix)
on a folder of aligned AB images, e.g. facades: unet_256 + the basic PatchGAN with BatchNorm,
batch 1, resize to 286 and random crop to 256 with flips, vanilla GAN loss + 100 x L1,
Adam(2e-4, 0.5), 100 epochs constant then 100 decaying linearly to 0.

  python -m genjax.cli.train --config=experiments/configs/pix2pix_facades.py --workdir=runs/facades \\
      --config.dataset.path=/data/facades
"""

from experiments.configs._folder import folder_config

EXAMPLES = 400  # facades/train; set for another dataset: an epoch is EXAMPLES / batch steps


def get_config():
  c = folder_config("pix2pix", "aligned", EXAMPLES)
  c.dataset.direction = "BtoA"  # facades: labels (B) -> photos (A), as in the reference's script
  return c
