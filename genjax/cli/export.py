r"""Exports a run's networks: ``python -m genjax.cli.export --workdir=RUN --out=PATH``.

* ``--format=npz`` (default): one network (``--role``, default the sampling network; EMA weights
  where kept) with its buffers and the run's config, in one ``.npz`` (:func:`genjax.frozen.export`)
  that :func:`genjax.frozen.from_export` (and ``genjax.cli.translate --weights``) load back.
* ``--format=torch``: every network of a Pix2Pix/CycleGAN run as the reference repo's
  ``latest_net_<ROLE>.pth`` files in the folder ``--out`` (``latest_net_G.pth``,
  ``latest_net_D_A.pth``, ...; :func:`genjax.frozen.export_torch`), which its ``test.py`` and
  ``torch.load`` read.

Prints one JSON line.
"""

from __future__ import annotations

from absl import app
from absl import flags

from genjax.errors import report_json

flags.DEFINE_string("workdir", None, "A training run's workdir (holding checkpoints/).")
flags.DEFINE_string("out", None, "The .npz file (npz) or the folder (torch) to write.")
flags.DEFINE_enum("format", "npz", ["npz", "torch"], "What to write.")
flags.DEFINE_string("role", None, "npz: the network to export (default: the sampling network).")
flags.DEFINE_string("dtype", "float32", "npz: storage dtype of the floating-point arrays.")
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from genjax import frozen  # pylint: disable=g-import-not-at-top
  if FLAGS.format == "torch":
    report_json(frozen.export_torch, FLAGS.workdir, FLAGS.out)
  else:
    report_json(frozen.export, FLAGS.workdir, FLAGS.out, role=FLAGS.role, dtype=FLAGS.dtype)


if __name__ == "__main__":
  app.run(main)
