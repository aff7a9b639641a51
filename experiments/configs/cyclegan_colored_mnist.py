"""CycleGAN on colored_mnist (offline, unpaired: MNIST digits <-> colourised digits from the
other half of the training set), 32 x 32 (28 padded): resnet_6blocks generators and basic
PatchGANs with InstanceNorm, the reference's losses (LSGAN, cycle 10, pools of 50; no identity
terms, which need as many channels in A as in B), batch 16, 2400 steps (1.3 passes over each domain; 1.6 steps/s on 2 cores). The test split is paired with the true colourisation, so translations are scored
against it.
"""

from genjax.config import base_config


def get_config():
  c = base_config("cyclegan")
  c.dataset.name = "colored_mnist"
  c.dataset.image_size = 32
  c.model.netG = "resnet_6blocks"
  c.model.ngf = 32
  c.model.ndf = 32
  c.method.gan_mode = "lsgan"
  c.method.lambda_L1 = 0.0
  c.method.lambda_identity = 0.0  # A is gray, B colour: no identity terms (as the reference)
  c.method.pool_size = 50
  c.method.update_order = "g_first"
  c.batch_size = 16
  c.num_steps = 2400
  c.optimizer.schedule = "hold_linear"
  c.optimizer.hold_steps = 1200
  c.num_samples = 8
  c.sample_every = 600
  c.checkpoint_every = 600
  c.eval.weights = "experiments/classifiers/mnist"
  c.eval.every = 1200
  return c
