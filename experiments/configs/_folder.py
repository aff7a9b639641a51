"""Shared settings of the configs that train on a user's folder of images at
pytorch-CycleGAN-and-pix2pix's defaults (train.py): batch 1, resize to 286 and random crop to
256 with flips, Adam's learning rate held for 100 epochs then decayed linearly to 0 over 100
more, a sample grid every 10 epochs and a checkpoint every 5."""

from genjax.config import base_config


def folder_config(model: str, layout: str, examples: int):
  """``model``'s defaults on an ``image_folder`` of ``layout`` ("aligned" AB images or
  "unaligned" trainA/trainB) whose epoch is ``examples`` images."""
  c = base_config(model)
  c.dataset.name = "image_folder"
  c.dataset.layout = layout
  c.dataset.preprocess = "resize_and_crop"
  c.dataset.load_size = 286
  c.dataset.crop_size = 256
  c.dataset.flip = True
  c.batch_size = 1
  epochs = examples // c.batch_size
  c.num_steps = 200 * epochs
  c.optimizer.schedule = "hold_linear"
  c.optimizer.hold_steps = 100 * epochs
  c.num_samples = 8
  c.sample_every = 10 * epochs
  c.checkpoint_every = 5 * epochs
  c.log_every = 100
  return c
