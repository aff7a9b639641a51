r"""Translates a folder of images with a trained or imported generator.

  python -m genjax.translate --weights=runs/edges2fashion --input_dir=edges/ --output_dir=out/
  python -m genjax.translate --weights=latest_net_G.pth --netG=unet_256 --norm=batch \
      --input_dir=facades/test_labels --output_dir=out/

``--weights`` is a genjax run (``RUN[@STEP][#ROLE]``: its generator, EMA weights where kept, with
the run's architecture, channels and value range), a genjax export (``.npz``) or the reference
repo's ``latest_net_G.pth`` (then ``--netG``, ``--norm``, ``--use_dropout``, ``--input_nc`` and
``--output_nc`` name its architecture, as the reference's test options do). Every PNG/JPEG under
``--input_dir`` is converted to the generator's input channels, resized to ``--load_size`` (the
reference's test-time resize; by default the generator's input size; 0 keeps the size), translated, and written as a PNG of the same
name under ``--output_dir``; a progress bar goes to stderr and one JSON line to stdout.

``--train_mode`` (the default, as the reference's test.py without ``--eval``) keeps dropout and
BatchNorm's batch statistics of each image on; ``--notrain_mode`` uses the running statistics and
no dropout. Images are translated one at a time in either mode (vectorised over a batch), so
batch statistics never mix images.
"""

from __future__ import annotations

import os
import sys
import time

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


def _progress(done: int, total: int, start: float) -> None:
  if not sys.stderr.isatty() and done not in (total,) and done % 50:
    return
  width = 30
  filled = width * done // max(total, 1)
  rate = done / max(time.perf_counter() - start, 1e-9)
  sys.stderr.write(f"\rtranslated {done}/{total} [{'=' * filled}{' ' * (width - filled)}] "
                   f"{rate:.1f} img/s")
  if done == total:
    sys.stderr.write("\n")
  sys.stderr.flush()


def translate(weights: str, input_dir: str, output_dir: str, *, load_size: int = -1,
              train_mode: bool = True, batch_size: int = 8, seed: int = 0,
              netG: str = "unet_256", norm: str = "batch", use_dropout: bool = True,  # pylint: disable=invalid-name
              ngf: int = 64, input_nc: int = 3, output_nc: int = 3) -> dict:
  """Translates every image under ``input_dir`` into ``output_dir``; returns a summary."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from genjax import data, frozen  # pylint: disable=g-import-not-at-top,g-multiple-import
  from genjax.data import folders  # pylint: disable=g-import-not-at-top
  from genjax.errors import DataError  # pylint: disable=g-import-not-at-top
  from genjax.models import translation_nets  # pylint: disable=g-import-not-at-top

  if not os.path.isdir(input_dir):
    raise DataError(f"no input folder {input_dir}")
  paths = folders.image_paths(input_dir)
  if not paths:
    raise DataError(f"no PNG or JPEG images in {input_dir}")
  net = frozen.load(weights, train=train_mode, build=lambda: translation_nets.define_G(
      netG, input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout,
      rngs=nnx.Rngs(0)))
  if net.config is not None:  # a genjax run: its channels and value range
    ds = net.config.dataset
    size, _, channels = data.image_shapes(ds)["A"]
    lo, hi = (float(v) for v in ds.value_range)
  else:
    size, channels, (lo, hi) = 256, input_nc, (-1.0, 1.0)
  load_size = size if load_size < 0 else load_size
  graphdef, weights_state = nnx.split(net.module)
  takes_rng = "rng" in net.module.spec.takes

  @jax.jit
  def run(weights_state, images, key):
    def one(image, key):  # a batch of one: batch statistics never mix images
      g = nnx.merge(graphdef, weights_state)
      x = image[None].astype(jnp.float32) * ((hi - lo) / 255.0) + lo
      y = g(x, rng=key if train_mode else None) if takes_rng else g(x)
      return jnp.clip(y[0].astype(jnp.float32), lo, hi)
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(one)(images, keys)

  os.makedirs(output_dir, exist_ok=True)
  key, start, written = jax.random.PRNGKey(seed), time.perf_counter(), []
  for i in range(0, len(paths), batch_size):
    chunk = paths[i:i + batch_size]
    images = []
    for path in chunk:
      try:
        with Image.open(path) as im:
          im = im.convert("RGB" if channels == 3 else "L")
          if load_size:
            im = im.resize((load_size, load_size), Image.BICUBIC)
          images.append(np.asarray(im).reshape(im.size[1], im.size[0], channels))
      except OSError as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    if len({x.shape for x in images}) > 1:
      raise DataError(f"images of different sizes in one batch ({chunk[0].name}, ...): give "
                      f"--load_size to resize them")
    out = np.asarray(run(weights_state, np.stack(images), jax.random.fold_in(key, i)))
    # As the reference's tensor2im: (x + 1) / 2 * 255, truncated to uint8.
    out = ((out - lo) / (hi - lo) * 255.0).astype(np.uint8)
    for path, image in zip(chunk, out):
      name = os.path.splitext(os.path.relpath(path, input_dir))[0] + ".png"
      target = os.path.join(output_dir, name)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(target)
      written.append(target)
    _progress(len(written), len(paths), start)
  return {"images": len(written), "output_dir": output_dir, "weights": weights,
          "seconds": round(time.perf_counter() - start, 2)}


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = FLAGS
  report_json(translate, f.weights, f.input_dir, f.output_dir, load_size=f.load_size,
              train_mode=f.train_mode, batch_size=f.batch_size, seed=f.seed, netG=f.netG,
              norm=f.norm, use_dropout=f.use_dropout, ngf=f.ngf, input_nc=f.input_nc,
              output_nc=f.output_nc)


if __name__ == "__main__":
  app.run(main)
