"""CycleGAN at the reference's defaults (pytorch-CycleGAN-and-pix2pix, train.py --model cycle_gan)
on a folder of unaligned images (trainA/, trainB/), e.g. horse2zebra: two resnet_9blocks
generators and two basic PatchGANs with InstanceNorm, batch 1, resize to 286 and random crop to
256 with flips, LSGAN loss, cycle weights 10, identity 0.5, pools of 50 fakes, Adam(2e-4, 0.5),
100 epochs constant then 100 decaying linearly to 0.

  python -m genjax.cli.train --config=experiments/configs/cyclegan_horse2zebra.py \\
      --workdir=runs/horse2zebra --config.dataset.path=/data/horse2zebra
"""

from experiments.configs._folder import folder_config

EXAMPLES = 1334  # horse2zebra/trainA; an epoch is max(|A|, |B|) / batch steps in the reference


def get_config():
  c = folder_config("cyclegan", "unaligned", EXAMPLES)
  c.method.gan_mode = "lsgan"
  c.method.lambda_L1 = 0.0
  c.method.pool_size = 50
  c.method.update_order = "g_first"
  return c
