"""Summarises a run's kernel profile: ``python -m genjax.cli.profile --workdir=<dir>``.

Prints the ops that took the most time in the newest ``jax.profiler`` trace under ``--workdir``
(written by a training run with ``--config.profile.start_step=A --config.profile.stop_step=B``)
and, where the run dumped its HLO (``--config.profile.dump_hlo``), what each op is; ``--by kind``
sums them by custom-call target or op kind. See :mod:`genjax.profiling`.
"""

from __future__ import annotations

import argparse
import os
import sys

from genjax import profiling


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m genjax.cli.profile",
                              description="The ops that took the most time in a run's trace.")
  p.add_argument("--workdir", required=True, help="a run's workdir, its profile folder or a "
                 "*.trace.json.gz file")
  p.add_argument("--top", type=int, default=15)
  p.add_argument("--by", choices=("op", "kind"), default="op",
                 help="op: each HLO instruction; kind: summed by custom-call target or op kind "
                 "(the name without its numeric suffix)")
  p.add_argument("--hlo", default=None, help="optimized HLO dump to describe the ops with "
                 "(default: <workdir>/hlo/train_step.optimized.hlo.txt where it exists)")
  a = p.parse_args(argv)
  hlo = a.hlo or os.path.join(a.workdir, "hlo", "train_step.optimized.hlo.txt")
  try:
    hlo_text = open(hlo).read() if os.path.isfile(hlo) else None
    if a.by == "kind":
      summary = profiling.by_kind(profiling.top_ops(a.workdir, n=sys.maxsize), hlo_text)
      print(profiling.format_top({**summary, "ops": summary["ops"][:a.top]}))
    else:
      print(profiling.format_top(profiling.top_ops(a.workdir, a.top), hlo_text))
  except (FileNotFoundError, OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
