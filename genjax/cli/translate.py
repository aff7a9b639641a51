r"""Translates a folder of images with a trained or imported generator.

  python -m genjax.cli.translate --weights=runs/edges2fashion --input_dir=edges/ --output_dir=out/
  python -m genjax.cli.translate --weights=latest_net_G.pth --netG=unet_256 --norm=batch \
      --input_dir=facades/test_labels --output_dir=out/

``--weights`` is a genjax run (``RUN[@STEP][#ROLE]``: its generator, EMA weights where kept, with
the run's architecture, channels and value range), a genjax export (``.npz``) or the reference
repo's ``latest_net_G.pth`` (then ``--netG``, ``--norm``, ``--use_dropout``, ``--input_nc`` and
``--output_nc`` name its architecture, as the reference's test options do). Every PNG/JPEG under
``--input_dir`` is converted to the generator's input channels, resized to ``--load_size`` (the
reference's test-time resize; by default the generator's input size; 0 keeps the size),
translated, and written as a PNG of the same name under ``--output_dir``
(:func:`genjax.folder_translation.translate`); a progress bar goes to stderr and one JSON line to
stdout.

``--train_mode`` (the default, as the reference's test.py without ``--eval``) keeps dropout and
BatchNorm's batch statistics of each image on; ``--notrain_mode`` uses the running statistics and
no dropout.
"""

from __future__ import annotations

from absl import app
from absl import flags

from genjax.errors import report_json

flags.DEFINE_string("weights", None, "A genjax run RUN[@STEP][#ROLE], an export .npz or a .pth.")
flags.DEFINE_string("input_dir", None, "Folder of input images (searched recursively).")
flags.DEFINE_string("output_dir", None, "Folder for the translated PNGs.")
flags.DEFINE_integer("load_size", -1, "Resize inputs to this square size first (0: keep them; "
                     "-1: the generator's input size, a run's A size or 256 for a .pth).")
flags.DEFINE_bool("train_mode", True, "Dropout and per-image batch statistics, as the reference.")
flags.DEFINE_integer("batch_size", 8, "Images per compiled call.")
flags.DEFINE_integer("seed", 0, "Seed of the dropout noise in train mode.")
flags.DEFINE_string("netG", "unet_256", ".pth only: the generator's architecture.")
flags.DEFINE_string("norm", "batch", ".pth only: batch, instance or none.")
flags.DEFINE_bool("use_dropout", True, ".pth only: whether the generator has dropout layers.")
flags.DEFINE_integer("ngf", 64, ".pth only: the generator's width.")
flags.DEFINE_integer("input_nc", 3, ".pth only: input channels (3 RGB, 1 gray).")
flags.DEFINE_integer("output_nc", 3, ".pth only: output channels.")
flags.mark_flags_as_required(["weights", "input_dir", "output_dir"])
FLAGS = flags.FLAGS


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from genjax import folder_translation  # pylint: disable=g-import-not-at-top
  f = FLAGS
  report_json(folder_translation.translate, f.weights, f.input_dir, f.output_dir,
              load_size=f.load_size, train_mode=f.train_mode, batch_size=f.batch_size,
              seed=f.seed, netG=f.netG, norm=f.norm, use_dropout=f.use_dropout, ngf=f.ngf,
              input_nc=f.input_nc, output_nc=f.output_nc)


if __name__ == "__main__":
  app.run(main)
