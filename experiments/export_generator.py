r"""Exports a trained GAN's generator (EMA weights where kept, and its buffers) to one .npz.

  python -m experiments.export_generator --workdir=DIR --out=tests/data/NAME.npz

The file holds every array under its tree path (``params/...``, ``buffers/...``) plus the run's
config as JSON (``config``), which is enough to rebuild the generator without the discriminator
or optimizer state. ``load_generator`` reads it back.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app
from absl import flags



def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {prefix + jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def export(workdir: str, out: str, dtype: str = "float16") -> dict:
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  method, state, config = features.restore_run(workdir)
  role = method.SAMPLE_NET
  arrays = {**_flatten("params", state.ema.get(role, state.params[role])),
            **_flatten("buffers", state.buffers[role])}
  arrays = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in arrays.items()}
  np.savez_compressed(out, config=np.array(config.to_json()), step=np.array(int(state.step)),
                      **arrays)
  return {"out": out}


def load_generator(path: str):
  """``(method, params, buffers)`` of an exported generator, as float32."""
  from genjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genjax import train  # pylint: disable=g-import-not-at-top
  with np.load(path) as f:
    stored = {k: f[k] for k in f.files}
  config = config_lib.from_json(str(stored["config"]))
  method = train.build_method(config)
  role = method.SAMPLE_NET
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0))

  def fill(prefix, tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = [stored[prefix + jax.tree_util.keystr(p)].astype(x.dtype) for p, x in leaves]
    return jax.tree.unflatten(jax.tree.structure(tree), values)
  return (method, fill("params", abstract.params[role]),
          fill("buffers", abstract.buffers[role]))


def main(argv):
  del argv
  from genjax.errors import report_json  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  report_json(export, f.workdir, f.out, f.dtype)


if __name__ == "__main__":
  # Flags are defined only when run as a script: importing load_generator (e.g. from the tests)
  # must not clash with other entry points' flags.
  flags.DEFINE_string("workdir", None, "A training run's workdir.")
  flags.DEFINE_string("out", None, "Output .npz path.")
  flags.DEFINE_string("dtype", "float16", "Storage dtype of the floating-point arrays.")
  flags.mark_flags_as_required(["workdir", "out"])
  app.run(main)
