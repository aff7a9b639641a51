"""One measurement in a fresh process: compile time (cold or warm cache) and peak memory.

The harness runs ``python -m benchmarks.probe --side genjax --cache-dir D ...`` twice per workload
(the first run fills the persistent compilation cache ``D``, the second reads it) and
``--side peer`` once; each prints one ``PROBE {json}`` line. A fresh process makes the first call
really the first and its peak memory that of this workload alone. ``--side peer --serve`` is the
PyTorch side of the interleaved step timing (:func:`serve_peer`).

Memory: on CPU the increase of the process's peak RSS (``VmHWM``) over its RSS before the model
was built; on GPU the device's ``peak_bytes_in_use`` (JAX) or
``torch.cuda.max_memory_allocated`` (PyTorch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to torch

from flax import nnx  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import workloads  # pylint: disable=wrong-import-position
from genjax import host  # pylint: disable=wrong-import-position

MARKER = "PROBE "
_MB = 2.0 ** 20


def _status_kib(field: str) -> int | None:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
  except (OSError, ValueError, IndexError):
    pass
  return None


def current_rss() -> int:
  """Resident set size in bytes (Linux; 0 where unknown)."""
  kib = _status_kib("VmRSS")
  return 0 if kib is None else kib * 1024


def reset_peak_rss() -> None:
  """Sets the peak RSS to the current RSS where the kernel allows it (Linux >= 4.0)."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass


def peak_rss() -> int:
  """Peak resident set size of this process in bytes.

  ``VmHWM`` belongs to the process's own address space. ``getrusage``'s ``ru_maxrss`` would not
  do: on Linux it keeps, across ``exec``, the peak of the parent process that forked it.
  """
  kib = _status_kib("VmHWM")
  if kib is None:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return kib * 1024


def _baseline() -> int:
  reset_peak_rss()
  return current_rss()


def probe_genjax(config, steps: int, cache_dir: str) -> dict:
  """Times the first call of the step and measures the memory of ``steps`` more.

  ``compile_s`` is what the first call spends before the step can run: tracing, lowering and
  compiling (or loading from the persistent cache); ``first_call_s`` adds the run itself.
  """
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  device = jax.devices()[0]
  host_batch = workloads.make_batch(config)
  base = _baseline()
  setup = workloads.build_genjax(config, host_batch)
  jax.block_until_ready(setup.state)
  t0 = time.perf_counter()
  lowered = setup.step.lower(setup.state, setup.batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  state, metrics = compiled(setup.state, setup.batch)
  jax.block_until_ready((state, metrics))
  t3 = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, setup.batch)
    jax.block_until_ready((state, metrics))
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    peak, source = stats["peak_bytes_in_use"] / _MB, "device peak_bytes_in_use"
  else:
    peak, source = (peak_rss() - base) / _MB, "peak RSS increase"
  xla = {}
  try:  # XLA's own plan: arguments (the state, batch), outputs, temporaries, code
    ma = compiled.memory_analysis()
    xla = {k.replace("_size_in_bytes", "_mb"): getattr(ma, k) / _MB for k in (
        "argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
        "generated_code_size_in_bytes") if hasattr(ma, k)}
  except Exception:  # pylint: disable=broad-except
    pass
  return {"compile_s": t2 - t0, "first_call_s": t3 - t0, "trace_lower_s": t1 - t0,
          "backend_compile_s": t2 - t1, "first_step_s": t3 - t2, "xla_memory": xla,
          "peak_mem_mb": peak, "mem_source": source}


def _torch(device: str, threads: int):
  """torch, set up as the peer runs: ``threads`` threads, cuDNN autotuning on a GPU."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  if device.startswith("cuda"):
    torch.backends.cudnn.benchmark = True
  return torch


def _peer_step(torch, peer, images) -> None:
  """One peer update, waited for."""
  peer.step(images)
  if images.is_cuda:
    torch.cuda.synchronize()


def probe_peer(config, dtype: str, steps: int, device: str, channels_last: bool,
               threads: int) -> dict:
  """Peak memory of the PyTorch peer over ``steps + 1`` updates."""
  torch = _torch(device, threads)
  host_batch = workloads.make_batch(config)
  base = _baseline()
  peer = workloads.build_peer(config, dtype, device, channels_last=channels_last)
  images = workloads.peer_batch(host_batch).to(device)
  for _ in range(steps + 1):
    _peer_step(torch, peer, images)
  if images.is_cuda:
    return {"peak_mem_mb": torch.cuda.max_memory_allocated() / _MB,
            "mem_source": "torch.cuda.max_memory_allocated"}
  return {"peak_mem_mb": (peak_rss() - base) / _MB, "mem_source": "peak RSS increase"}


def peer_flops(peer, images) -> float | None:
  """PyTorch's FlopCounterMode count of one peer step (convolutions and matrix products)."""
  try:
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  counter = FlopCounterMode(display=False)
  with counter:
    peer.step(images)
  return float(counter.get_total_flops())


def params_digest(nets: dict) -> str:
  """A digest of the genjax networks' parameters (the peer's server checks it is the same
  initial state as the harness's)."""
  digest = hashlib.sha256()
  for role in sorted(nets):
    for leaf in jax.tree.leaves(nnx.state(nets[role], nnx.Param)):
      digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def serve_peer(config, dtype: str, device: str, channels_last: bool, threads: int) -> None:
  """The PyTorch side of the harness's interleaved timing, in a process of its own.

  Sharing a process with genjax would skew the peer: both link OpenMP as ``libgomp.so.1``, so
  they share one runtime, and genjax's oneDNN teams (one per XLA thread) push its thread count
  over the cores, which makes libgomp stop spin-waiting, so that PyTorch's many small parallel
  ops each pay a futex wake-up (its VAE step went from 28 to 38 ms after genjax had run).

  Replies (one ``PROBE {json}`` line each): first the peer's parameter counts, FLOPs and the
  digest of the genjax weights it copied; then, for each line ``n`` read from stdin, the times
  of ``n`` steps (seconds). An empty line or ``0`` ends it.
  """
  from benchmarks import torch_peers  # pylint: disable=g-import-not-at-top
  torch = _torch(device, threads)
  host_batch = workloads.make_batch(config)
  config.conv_backend = "xla"  # only the initial weights are needed here: no oneDNN teams
  nets = workloads.networks(workloads.build_genjax(config, host_batch))
  peer = workloads.build_peer(config, dtype, device, channels_last=channels_last)
  torch_peers.load_genjax(peer, nets)
  images = workloads.peer_batch(host_batch).to(device)
  print(MARKER + json.dumps({"params": peer.num_params(), "flops": peer_flops(peer, images),
                             "digest": params_digest(nets)}), flush=True)
  for line in sys.stdin:
    n = int(line.strip() or 0)
    if n <= 0:
      break
    times = []
    for _ in range(n):
      t = time.perf_counter()
      _peer_step(torch, peer, images)
      times.append(time.perf_counter() - t)
    print(MARKER + json.dumps({"times": times}), flush=True)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--side", choices=("genjax", "peer"), required=True)
  p.add_argument("--model", required=True)
  p.add_argument("--batch", type=int, required=True)
  p.add_argument("--dtype", required=True)
  p.add_argument("--steps", type=int, default=2, help="steps after the first")
  p.add_argument("--cache-dir", default="")
  p.add_argument("--tiny", action="store_true")
  p.add_argument("--peer-device", default="cpu")
  p.add_argument("--peer-channels-last", action="store_true")
  p.add_argument("--conv-backend", default="auto")
  p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  p.add_argument("--default-malloc", action="store_true")
  p.add_argument("--serve", action="store_true",
                 help="--side peer: time steps on request (stdin) for the harness")
  a = p.parse_args(argv)
  if not a.default_malloc:
    host.tune_malloc()
  config = workloads.make_config(workloads.get(a.model), a.batch, a.dtype, tiny=a.tiny,
                                 conv_backend=a.conv_backend)
  if a.serve:
    serve_peer(config, a.dtype, a.peer_device, a.peer_channels_last, a.threads)
    return
  if a.side == "genjax":
    result = probe_genjax(config, a.steps, a.cache_dir)
  else:
    result = probe_peer(config, a.dtype, a.steps, a.peer_device, a.peer_channels_last, a.threads)
  print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
