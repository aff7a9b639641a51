r"""Exports a run's networks: ``python -m genjax.export --workdir=RUN --out=PATH``.

* ``--format=npz`` (default): one network (``--role``, default the sampling network; EMA weights
  where kept) with its buffers and the run's config, in one ``.npz`` that
  :func:`genjax.frozen.from_export` (and ``genjax.translate --weights``) load back.
* ``--format=torch``: every network of a Pix2Pix/CycleGAN run as the reference repo's
  ``latest_net_<ROLE>.pth`` files in the folder ``--out`` (``latest_net_G.pth``,
  ``latest_net_D_A.pth``, ...), which its ``test.py`` and ``torch.load`` read.

Prints one JSON line.
"""

from __future__ import annotations

import os

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


def export_torch(workdir: str, out: str) -> dict:
  """Writes ``latest_net_<ROLE>.pth`` for every network of a translation run into ``out``."""
  from genjax import runs, torch_weights  # pylint: disable=g-import-not-at-top,g-multiple-import
  from genjax.errors import CheckpointError  # pylint: disable=g-import-not-at-top
  method, state, config = runs.restore_run(workdir)
  nets = {role: method.net(role, state.ema.get(role, state.params[role]), state.buffers[role])
          for role in state.params}
  if not all(hasattr(net, "torch_layers") for net in nets.values()):
    raise CheckpointError(f"{workdir} holds a {config.model.name!r} run: only Pix2Pix and "
                          f"CycleGAN networks have the reference's PyTorch layout")
  os.makedirs(out, exist_ok=True)
  files = {}
  for role, net in nets.items():
    files[role] = os.path.join(out, f"latest_net_{role}.pth")
    torch_weights.write_state_dict(files[role], torch_weights.to_torch(net))
  return {"files": files, "step": int(state.step)}


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.format == "torch":
    report_json(export_torch, FLAGS.workdir, FLAGS.out)
  else:
    from genjax import frozen  # pylint: disable=g-import-not-at-top
    report_json(frozen.export, FLAGS.workdir, FLAGS.out, role=FLAGS.role, dtype=FLAGS.dtype)


if __name__ == "__main__":
  app.run(main)
