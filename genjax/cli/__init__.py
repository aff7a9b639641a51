"""genjax's command lines, each ``python -m genjax.cli.<command> --help``:

* ``train``: trains a model from a config file into a workdir, resuming from its newest
  checkpoint (single- or multi-process);
* ``evaluate``: scores a run's checkpoint (FID, KID, IS, precision/recall, density/coverage);
* ``gan_accuracy``: the test accuracy of an SGAN's or InfoGAN's discriminator as a classifier;
* ``translate``: translates a folder of images with a run's, an export's or a reference ``.pth``
  generator;
* ``export``: writes a run's network to a ``.npz``, or a translation run's networks to the
  reference's ``.pth`` files;
* ``profile``: the ops that took the most time in a run's kernel profile.

A command holds its flags, their checks and ``main``, and calls the library: nothing of the
library imports this package.
"""
