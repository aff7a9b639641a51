"""Benchmarks genjax's train steps against PyTorch peers and writes JSON and markdown results.

  python -m benchmarks.run [--suite default] [--models dcgan64,dcgan32,vae] [--batch 64]
      [--dtypes float32,bfloat16] [--steps 20] [--warmup 3] [--out benchmarks/results]
      [--max-isa avx2] [--dry-run]

Run from the repository root (the workloads read ``experiments/configs``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to torch
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import harness  # pylint: disable=wrong-import-position
from benchmarks import report  # pylint: disable=wrong-import-position
from benchmarks import workloads  # pylint: disable=wrong-import-position
from genjax import host  # pylint: disable=wrong-import-position
from genjax import kernels  # pylint: disable=wrong-import-position

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _csv(text: str) -> list[str]:
  return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m benchmarks.run",
                              description="genjax train step vs PyTorch: speed, compile time, "
                              "memory, FLOPs/MFU and input pipeline.")
  p.add_argument("--suite", default="default", choices=sorted(harness.SUITES),
                 help="named list of (model, batch)")
  p.add_argument("--models", type=_csv, default=None,
                 help=f"comma-separated subset/order of {','.join(workloads.WORKLOADS)} "
                 "(default: the suite's)")
  p.add_argument("--batch", type=int, default=None,
                 help="global batch for every model (default: each model's suite batch)")
  p.add_argument("--dtypes", type=_csv, default=None,
                 help="comma-separated compute dtypes (default float32,bfloat16; float32 alone "
                 "on a CPU without bfloat16 instructions, where PyTorch emulates them)")
  p.add_argument("--steps", type=int, default=None, help="timed steps per side (default 20)")
  p.add_argument("--warmup", type=int, default=None, help="untimed steps per side (default 3)")
  p.add_argument("--block", type=int, default=None,
                 help="steps per side in each alternating block (default 5)")
  p.add_argument("--out", default=None,
                 help=f"results folder (default {os.path.relpath(DEFAULT_OUT)}; a temporary one "
                 "with --dry-run)")
  p.add_argument("--dry-run", action="store_true",
                 help="tiny networks, 2 steps, small GEMMs: checks the whole flow in seconds")
  p.add_argument("--no-peer", action="store_true", help="genjax only")
  p.add_argument("--no-probes", action="store_true",
                 help="skip the fresh-process compile and memory measurements")
  p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                 help="before each (model, dtype), wait up to SECONDS for other processes to use "
                 f"under {100 * harness.QUIET:.0f}%% of the CPU, and time again (up to "
                 f"{harness.TIMING_RETRIES} times) when they took more while timing (for shared "
                 "machines)")
  p.add_argument("--conv-backend", default="auto", choices=kernels.BACKENDS,
                 help="genjax's config.conv_backend (default auto: oneDNN's kernels on CPU)")
  p.add_argument("--default-malloc", action="store_true",
                 help="leave glibc's allocator as it is; by default genjax.host.tune_malloc "
                 "applies to this process and the probes, so to both genjax and PyTorch")
  p.add_argument("--max-isa", choices=("avx2",), default=None,
                 help="run both sides as on an AVX2-only CPU: oneDNN, ATen, MKL and XLA's code "
                 "generator capped at AVX2 (the run restarts itself with that environment; "
                 "records say 'capped at avx2')")
  p.add_argument("--peer-nchw", action="store_true",
                 help="run the PyTorch peer in pytorch/examples' NCHW-contiguous memory format "
                 "instead of channels_last (the faster one on CPU here)")
  a = p.parse_args(argv)
  for dtype in a.dtypes or []:
    if dtype not in ("float32", "bfloat16"):
      p.error(f"unknown dtype {dtype!r}; valid: float32, bfloat16")
  for name in a.models or []:
    if name not in workloads.WORKLOADS:
      p.error(f"unknown model {name!r}; valid: {', '.join(workloads.WORKLOADS)}")
  for flag in ("steps", "warmup", "block", "batch"):
    value = getattr(a, flag)
    if value is not None and value < (0 if flag == "warmup" else 1):
      p.error(f"--{flag} must be positive, got {value}")
  if a.out is not None:  # made now: a folder that cannot be written would lose the run's timings
    try:
      os.makedirs(a.out, exist_ok=True)
    except OSError as e:
      p.error(f"--out {a.out} cannot be made ({e.strerror})")
    if not os.access(a.out, os.W_OK):
      p.error(f"--out {a.out} is not writable")
  return a


def options(a: argparse.Namespace) -> harness.Options:
  suite = dict(harness.SUITES[a.suite])
  names = a.models or list(suite)
  models = [(n, a.batch or suite.get(n) or workloads.get(n).batch) for n in names]
  if a.dry_run:  # tiny networks; a small batch unless one was asked for
    models = [(n, a.batch or 8) for n, _ in models]
  small = a.dry_run
  return harness.Options(
      models=models, dtypes=a.dtypes, suite=a.suite, dry_run=a.dry_run,
      steps=a.steps or (2 if small else 20),
      warmup=a.warmup if a.warmup is not None else (1 if small else 3),
      block=a.block or (1 if small else 5), peer=not a.no_peer,
      peer_channels_last=not a.peer_nchw, conv_backend=a.conv_backend, probes=not a.no_probes,
      tune_malloc=not a.default_malloc,
      wait_quiet=a.wait_quiet,
      log=lambda msg: print(msg, flush=True))


def main(argv: list[str] | None = None) -> int:
  a = parse_args(argv)
  if a.max_isa and not harness.isa_cap():  # the caps must be there before any library starts
    env = {**os.environ, **harness.AVX2_CAP}
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {harness.XLA_AVX2_FLAG}".strip()
    args = sys.argv[1:] if argv is None else argv
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.run", *args], env)
  opts = options(a)
  if opts.tune_malloc:  # before JAX's or torch's threads start
    host.tune_malloc()
  out = a.out or (tempfile.mkdtemp(prefix="genjax-bench-") if a.dry_run else DEFAULT_OUT)
  records = harness.run_suite(opts)
  json_path, md_path = report.write_run(records, out)
  readme = report.write_readme(out)
  print(f"\n{report.table(records)}\n\nwrote {json_path}\n      {md_path}\n      {readme}",
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
