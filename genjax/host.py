"""Host-process settings that must come before JAX starts its backend: glibc's allocator.

XLA:CPU allocates each execution's temporary buffer afresh (255 MB for the DCGAN-64 step at
batch 64). glibc serves allocations that large with a new ``mmap`` from the calling thread's
arena, and returns them to the kernel on free, so every step page-faults its whole working set
back in (64,000 minor faults, 10-15% of that step on the 2-core CPU here). PyTorch's eager
steps fault the same way (45,000 per DCGAN-64 step, 9,600 per VAE step) with their
per-op tensors.

:func:`tune_malloc` keeps freed memory in the process instead: one arena (the ``brk`` heap),
no ``mmap`` for large blocks, and the heap trimmed back only above 1 GiB free at its top. Its
effect is per process and needs to precede the threads it covers, so ``genjax.cli.train`` and
``benchmarks.run`` call it first (``config.tune_malloc``; ``--default-malloc``); a program
using genjax as a library calls it itself before JAX's first computation. The cost is that
the process keeps what it once used (a training process's high-water mark) instead of
returning it.
"""

from __future__ import annotations

import ctypes
import sys

from absl import logging

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
TRIM_THRESHOLD = 1 << 30


def _backend_started() -> bool:
  xla_bridge = sys.modules.get("jax._src.xla_bridge")
  return xla_bridge is not None and xla_bridge.backends_are_initialized()


def tune_malloc() -> bool:
  """Sets glibc's allocator to keep freed memory (see the module docstring); returns whether it
  did. Not glibc (macOS, musl): a no-op. After JAX's backend has started, its threads already
  have their own arenas: still applied, with a warning that it covers less."""
  if not sys.platform.startswith("linux"):
    return False
  try:
    mallopt = ctypes.CDLL(None).mallopt  # the process's libc
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  if _backend_started():
    logging.warning("tune_malloc after JAX's backend started: its threads keep their arenas "
                    "(call it before the first JAX computation)")
  for name, param, value in (("M_ARENA_MAX", _M_ARENA_MAX, 1), ("M_MMAP_MAX", _M_MMAP_MAX, 0),
                             ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
    if mallopt(param, value) != 1:
      logging.warning("glibc's mallopt refused %s=%d", name, value)
      return False
  return True


def cpu_isa() -> str:
  """The widest x86 vector ISA this CPU offers, as genjax's kernels and benchmarks see it:
  ``'avx512_bf16'``, ``'avx512'``, ``'avx2'`` or ``'other'`` (from ``/proc/cpuinfo``)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((set(line.split(":", 1)[1].split()) for line in f
                    if line.startswith("flags")), set())
  except OSError:
    flags = set()
  for isa, flag in (("avx512_bf16", "avx512_bf16"), ("avx512", "avx512f"), ("avx2", "avx2")):
    if flag in flags:
      return isa
  return "other"
