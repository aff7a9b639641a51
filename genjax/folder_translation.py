"""Translates a folder of images with a generator: a genjax run's, a genjax export's or the
reference repo's ``latest_net_G.pth`` (:func:`genjax.frozen.load`). Its command line is
``python -m genjax.cli.translate``.

Every PNG/JPEG under the input folder is converted to the generator's input channels, resized
(the reference's test-time resize), translated, and written as a PNG of the same name under the
output folder. In ``train_mode`` (the reference's test.py without ``--eval``) dropout and
BatchNorm's batch statistics stay on; images are translated one at a time in either mode
(vectorised over a batch), so batch statistics never mix images.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from genjax import errors
from genjax import frozen
from genjax.data import folders
from genjax.errors import ConfigError
from genjax.errors import DataError
from genjax.models import translation_nets


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


def _input_shape(net: frozen.Network) -> tuple[int, int, int]:
  """The shape of the images a genjax generator translates: its source domain's."""
  sources = {g: source for source, _, g, _ in getattr(net.method, "directions", ())}
  if net.role not in sources:
    what = (f"the {net.role!r} network of a {net.config.model.name!r} run" if sources else
            f"a {net.config.model.name!r} network")
    raise ConfigError(f"{net.source} is {what}: translate takes an image-to-image generator "
                      f"({', '.join(sources) or 'a Pix2Pix or CycleGAN run'})")
  return net.method.shapes[sources[net.role]]


def translate(weights: str, input_dir: str, output_dir: str, *, load_size: int = -1,
              train_mode: bool = True, batch_size: int = 8, seed: int = 0,
              netG: str = "unet_256", norm: str = "batch", use_dropout: bool = True,  # pylint: disable=invalid-name
              ngf: int = 64, input_nc: int = 3, output_nc: int = 3) -> dict:
  """Translates every image under ``input_dir`` into ``output_dir``; returns a summary."""
  if batch_size < 1:
    raise ConfigError(f"--batch_size must be >= 1, got {batch_size}")
  if not os.path.isdir(input_dir):
    raise DataError(f"no input folder {input_dir}")
  paths = folders.image_paths(input_dir)
  if not paths:
    raise DataError(f"no PNG or JPEG images in {input_dir}")
  if os.path.isfile(output_dir):  # before the network is loaded
    raise ConfigError(f"cannot make --output_dir {output_dir} (it is a file)")
  net = frozen.load(weights, train=train_mode, build=lambda: translation_nets.define_G(
      netG, input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout,
      rngs=nnx.Rngs(0)))
  if net.config is not None:  # a genjax run or export: its input domain's shape, value range
    size, _, channels = _input_shape(net)
    lo, hi = (float(v) for v in net.config.dataset.value_range)
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

  errors.make_folder(output_dir, "--output_dir")
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
