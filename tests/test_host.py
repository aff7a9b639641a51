"""genjax.host.tune_malloc: freed large blocks stay in the process instead of faulting back in."""

import subprocess
import sys

import pytest

_FAULTS = """
import ctypes, resource, sys, threading
if sys.argv[1] == "tuned":
  from genjax import host
  assert host.tune_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20
def step():  # a step's temporary buffer on a worker thread, as XLA allocates it: written, freed
  p = libc.malloc(SIZE)
  ctypes.memset(p, 1, SIZE)
  libc.free(p)
def faults():
  return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
def worker(out):
  step()  # warm up
  before = faults()
  for _ in range(4):
    step()
  out.append((faults() - before) // 4)
out = []
t = threading.Thread(target=worker, args=(out,))
t.start(); t.join()
print(out[0])
"""


def _faults_per_buffer(mode: str) -> int:
  out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True,
                       check=True)
  return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_malloc_keeps_freed_buffers_mapped():
  default, tuned = _faults_per_buffer("default"), _faults_per_buffer("tuned")
  # glibc mmaps each 64 MiB block afresh: one fault per page touched (16,384 with 4 KiB pages,
  # at least 32 where transparent huge pages back it); the tuned heap reuses the block.
  assert default >= (64 << 20) // (2 << 20), default
  assert tuned * 20 <= default, (tuned, default)


_AFTER_BACKEND = """
import jax.numpy as jnp
from genjax import host
jnp.ones(2).block_until_ready()
print(host.tune_malloc())
"""


def test_tune_malloc_after_backend_warns():
  # In a process of its own: tune_malloc changes the allocator of the process that calls it, and
  # pytest's would run every later test on it.
  out = subprocess.run([sys.executable, "-c", _AFTER_BACKEND], capture_output=True, text=True,
                       check=True)
  linux = sys.platform.startswith("linux")
  assert out.stdout.strip().splitlines()[-1] == str(linux)
  assert ("before the first JAX computation" in out.stderr) == linux, out.stderr[-2000:]
