"""Measures genjax's train steps against their PyTorch peers and returns JSON-ready records.

Per (model, dtype):

* Steady-state step time: genjax's jitted step and the peer's eager step run in the same
  process, in alternating blocks (genjax first in even rounds, the peer first in odd ones), so
  that machine drift and neighbours' load hit both alike. Every step is timed on its own and
  waited for (``jax.block_until_ready``; ``torch.cuda.synchronize`` on GPU); records give the
  median and the interquartile range.
* Compile time: what the first call of the step spends before running (trace, lower, compile)
  in a fresh process with an empty persistent compilation cache, then again in another fresh
  process reading the cache the first one filled (``benchmarks.probe``).
* Peak memory: per side, in the fresh processes (see ``benchmarks.probe``).
* FLOPs per step: XLA's cost analysis of the lowered step (the same work is credited to the
  peer); PyTorch's ``FlopCounterMode`` count of the peer's step (convolutions and matrix
  products only) is recorded beside it.
* MFU: FLOPs per step x steps/s / peak. The peak is the best large GEMM measured here (JAX and
  PyTorch, per dtype), except on GPUs of ``VENDOR_PEAKS``, where it is the vendor's dense peak
  (the measured GEMMs are recorded beside it).
* Input pipeline: images/s delivered by ``genjax.data.BatchIterator`` + ``prefetch`` +
  ``strategy.put_batch`` over Fashion-MNIST (random uint8 of its shape where the files are
  missing), measured alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import probe
from benchmarks import workloads
from genjax import data
from genjax import host
from genjax import kernels
from genjax import runs

# Other processes' CPU share under which the machine counts as quiet (``--wait-quiet``), and how
# many times a timing disturbed by them is redone, after waiting, when waiting is asked for.
QUIET = 0.1
TIMING_RETRIES = 3

SUITES: dict[str, list[tuple[str, int]]] = {
    "default": [("dcgan64", 64), ("dcgan32", 64), ("vae", 128)],
    # The reference's defaults, batch 1 (an example: one A/B pair, or one image of each domain).
    # Not in the default suite: on 2 CPU cores a PyTorch step took ~6 s (Pix2Pix) and ~12 s
    # (CycleGAN, ~2 TFLOP by XLA's count), so this suite takes ~40 minutes there.
    "translation": [("pix2pix256", 1), ("cyclegan256", 1)],
}

# Vendor dense tensor-core peaks (FLOP/s) of known GPUs, by substring of ``device_kind``, first
# match wins; float32 is the TF32 rate, which XLA and cuDNN use for float32 convolutions by
# default (SXM parts; NVIDIA's data sheets).
VENDOR_PEAKS = {
    "H100 PCIe": {"float32": 378e12, "bfloat16": 756e12},
    "H200": {"float32": 494.7e12, "bfloat16": 989.4e12},
    "H100": {"float32": 494.7e12, "bfloat16": 989.4e12},
    "A100": {"float32": 156e12, "bfloat16": 312e12},
}


@dataclasses.dataclass
class Options:
  """What to run; the CLI's flags (``benchmarks.run``)."""
  models: list[tuple[str, int]]  # (workload name, global batch)
  dtypes: list[str] | None  # None: this machine's default (default_dtypes)
  steps: int = 20
  warmup: int = 3
  block: int = 5
  suite: str = "default"
  dry_run: bool = False
  peer: bool = True
  peer_channels_last: bool = True
  conv_backend: str = "auto"  # genjax's config.conv_backend
  tune_malloc: bool = True  # genjax.host.tune_malloc in this process and the probes (both sides)
  probes: bool = True
  wait_quiet: float = 0.0  # seconds to wait, per workload, for other processes to go quiet
  log: Callable[[str], None] = print


# --- small helpers ------------------------------------------------------------------------------

def summarize(samples_s: list[float]) -> dict[str, float]:
  """Median, quartiles, extremes and IQR of step times given in seconds, in milliseconds."""
  ms = np.asarray(samples_s) * 1e3
  p25, p50, p75 = np.percentile(ms, [25, 50, 75])
  return {"median": float(p50), "p25": float(p25), "p75": float(p75), "min": float(ms.min()),
          "max": float(ms.max()), "iqr": float(p75 - p25)}


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def num_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def torch_or_none():
  try:
    import torch  # pylint: disable=g-import-not-at-top
    return torch
  except ImportError:
    return None


def peer_device(backend: str) -> str | None:
  """Where the peer runs: the CPU on CPU, CUDA on GPU (None if torch cannot reach the GPU)."""
  torch = torch_or_none()
  if torch is None:
    return None
  if backend == "cpu":
    return "cpu"
  return "cuda" if backend == "gpu" and torch.cuda.is_available() else None


# Caps every library of a process to AVX2 kernels, as on an AVX2-only CPU: oneDNN (2.x and 3.x
# names; genjax's and PyTorch's), PyTorch's ATen and MKL, and XLA's code generator. XNNPACK and
# YNNPACK (some of XLA's reductions) dispatch on the CPU's own flags. ``--max-isa avx2``.
AVX2_CAP = {"DNNL_MAX_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
XLA_AVX2_FLAG = "--xla_cpu_max_isa=AVX2"


def default_dtypes(backend: str, log: Callable[[str], None]) -> list[str]:
  """The dtypes a run times unless told: float32 and bfloat16, float32 alone on a CPU without
  bfloat16 instructions (``avx512_bf16``), or capped below them, where the peer's bfloat16 is
  emulated and genjax's convolutions compute in float32, so the pair would time neither side's
  bfloat16; it logs why."""
  if backend != "cpu" or (host.cpu_isa() == "avx512_bf16" and not isa_cap()):
    return ["float32", "bfloat16"]
  log(f"bfloat16 skipped: this CPU ({isa_description()}) has no bfloat16 instructions, so "
      "PyTorch emulates bfloat16 and genjax's convolutions compute in float32; --dtypes "
      "float32,bfloat16 times it anyway")
  return ["float32"]


def isa_cap() -> str | None:
  """``'avx2'`` where this process runs under :data:`AVX2_CAP`, else None."""
  capped = all(os.environ.get(k) == v for k, v in AVX2_CAP.items())
  return "avx2" if capped and XLA_AVX2_FLAG in os.environ.get("XLA_FLAGS", "") else None


def isa_description() -> str:
  """This CPU's ISA as the run sees it: ``'avx2'``, ``'avx512_bf16 capped at avx2'``, ..."""
  cap = isa_cap()
  return host.cpu_isa() + (f" capped at {cap}" if cap else "")


def device_description(backend: str) -> str:
  if backend == "cpu":
    return f"{cpu_name()} ({num_cores()} cores, {isa_description()})"
  devices = jax.devices()
  return f"{len(devices)}x {devices[0].device_kind}"


_LIVE_CHILDREN: set[int] = set()  # this run's processes not yet waited for (the peer server)


def _process_ticks(pid: int | str) -> int:
  """utime + stime of all the process's threads, plus cutime + cstime of the children it has
  waited for."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return sum(int(v) for v in fields[11:15])


def _cpu_ticks() -> tuple[int, int, int] | None:
  """(all cores' ticks, their idle ticks, the ticks of this run's processes) so far; None off
  Linux. This run's processes: this one, the probes it waited for, the live peer server."""
  try:
    with open("/proc/stat") as f:
      values = [int(v) for v in f.readline().split()[1:9]]
    own = _process_ticks("self") + sum(_process_ticks(pid) for pid in _LIVE_CHILDREN)
  except (OSError, ValueError, IndexError):
    return None
  return sum(values), values[3] + values[4], own


class OtherLoad:
  """Share of the machine's CPU time used by other processes since construction (Linux).

  A 2-thread PyTorch step slows down many times when a neighbour takes one of 2 cores (its
  threads meet at a barrier per op), far more than XLA's; records carry this share so that a
  run disturbed by other work can be told from a quiet one.
  """

  def __init__(self):
    self._start = _cpu_ticks()

  def share(self) -> float | None:
    end = _cpu_ticks()
    if self._start is None or end is None:
      return None
    total, idle, own = (b - a for a, b in zip(self._start, end))
    if total < 50:  # under ~0.25 s of 2 cores: too few clock ticks to tell
      return None
    return min(1.0, max(0.0, (total - idle - own) / total))


def other_load(seconds: float) -> float | None:
  """Other processes' share of the CPU over ``seconds`` of sleep."""
  meter = OtherLoad()
  time.sleep(seconds)
  return meter.share()


def wait_quiet(max_seconds: float, threshold: float, log: Callable[[str], None]) -> float:
  """Waits until other processes use less than ``threshold`` of the CPU; returns the wait."""
  t0 = time.perf_counter()
  while max_seconds > 0:
    share = other_load(2.0)
    waited = time.perf_counter() - t0
    if share is None or share < threshold or waited >= max_seconds:
      return waited
    log(f"  waiting for a quiet machine: other processes use {share:.0%} of the CPU")
    time.sleep(8.0)
  return 0.0


def _sync_peer(device: str) -> None:
  if device.startswith("cuda"):
    import torch  # pylint: disable=g-import-not-at-top
    torch.cuda.synchronize()


# --- machine peak -------------------------------------------------------------------------------

def _best_time(fn: Callable[[], Any], repeats: int) -> float:
  fn()
  best = math.inf
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def measure_gemm(dtype: str, n: int, repeats: int, device: str | None) -> dict[str, float]:
  """Best FLOP/s of an ``n x n x n`` matrix product in JAX and (if ``device``) PyTorch."""
  flops = 2.0 * n ** 3
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
  matmul = jax.jit(jnp.matmul)
  out = {"jax": flops / _best_time(lambda: matmul(a, b).block_until_ready(), repeats)}
  if device is not None:
    import torch  # pylint: disable=g-import-not-at-top
    tdt = torch.float32 if dtype == "float32" else torch.bfloat16
    x = torch.randn(n, n, device=device).to(tdt)
    y = torch.randn(n, n, device=device).to(tdt)

    def run():
      torch.mm(x, y)
      _sync_peer(device)

    out["torch"] = flops / _best_time(run, repeats)
  return out


def machine_peaks(dtypes: list[str], backend: str, device: str | None, *, dry_run: bool,
                  earlier: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
  """Per dtype: measured GEMM rates, the peak used for MFU and where it came from.

  ``earlier``: a previous measurement of this run; the best of both is kept (a CPU's clock and
  its neighbours vary over minutes, and the peak is the best the machine can do).
  """
  n = 256 if dry_run else (8192 if backend == "gpu" else 4096)
  repeats = 2 if dry_run else (10 if backend == "gpu" else 3)
  kind = jax.devices()[0].device_kind
  vendor = next((v for k, v in VENDOR_PEAKS.items() if k in kind), None)
  peaks = {}
  for dtype in dtypes:
    measured = measure_gemm(dtype, n, repeats, device)
    for k, v in (earlier or {}).get(dtype, {}).items():
      if k.startswith("gemm_") and k.endswith("_flops"):
        measured[k[5:-6]] = max(measured.get(k[5:-6], 0.0), v)
    best = max(measured.values())
    source = f"best {n}^3 GEMM measured ({', '.join(measured)}; start and end of the run)"
    if backend == "gpu" and vendor and dtype in vendor:
      best, source = vendor[dtype], f"vendor dense peak for {kind}"
    peaks[dtype] = {"peak_flops": best, "peak_source": source,
                    **{f"gemm_{k}_flops": v for k, v in measured.items()}}
  return peaks


# --- input pipeline -----------------------------------------------------------------------------

def measure_pipeline(batch: int, *, dry_run: bool) -> dict[str, Any]:
  """Images/s of BatchIterator + prefetch + put_batch over Fashion-MNIST's training split."""
  from genjax import parallel  # pylint: disable=g-import-not-at-top
  try:
    arrays = data.load("fashion_mnist", "train", download=False)
    source = "fashion_mnist train"
  except Exception:  # pylint: disable=broad-except
    rng = np.random.default_rng(0)
    arrays = {"image": rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8),
              "label": np.zeros(60000, np.int32)}
    source = "random uint8 of fashion_mnist's shape (files not found)"
  strategy = parallel.make_strategy("mesh")
  stream = data.prefetch(data.BatchIterator(arrays, batch, seed=0), strategy.put_batch, size=2)
  min_batches, seconds = (3, 0.0) if dry_run else (50, 2.0)
  try:
    for _ in range(3):
      jax.block_until_ready(next(stream))
    n, t0 = 0, time.perf_counter()
    while n < min_batches or time.perf_counter() - t0 < seconds:
      jax.block_until_ready(next(stream))
      n += 1
    elapsed = time.perf_counter() - t0
  finally:
    stream.close()
  return {"pipeline_images_per_sec": n * batch / elapsed, "pipeline_source": source}


# --- fresh-process probes -----------------------------------------------------------------------

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _probe_command(side: str, name: str, batch: int, dtype: str, opts: Options, *,
                   cache_dir: str = "", device: str = "cpu") -> tuple[list[str], dict[str, str]]:
  cmd = [sys.executable, "-m", "benchmarks.probe", "--side", side, "--model", name, "--batch",
         str(batch), "--dtype", dtype, "--steps", "1" if opts.dry_run else "2",
         "--cache-dir", cache_dir, "--peer-device", device, "--threads", str(num_cores())]
  if opts.dry_run:
    cmd.append("--tiny")
  if opts.peer_channels_last:
    cmd.append("--peer-channels-last")
  cmd += ["--conv-backend", opts.conv_backend]
  if not opts.tune_malloc:
    cmd.append("--default-malloc")
  env = dict(os.environ)
  env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
  return cmd, env


def run_probe(side: str, name: str, batch: int, dtype: str, opts: Options, *,
              cache_dir: str = "", device: str = "cpu") -> dict[str, Any]:
  """Runs ``benchmarks.probe`` in a fresh interpreter and returns its result."""
  cmd, env = _probe_command(side, name, batch, dtype, opts, cache_dir=cache_dir, device=device)
  proc = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True, timeout=1200,
                        check=False)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith(probe.MARKER):
      return json.loads(line[len(probe.MARKER):])
  tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
  raise RuntimeError(f"probe {side} {name} {dtype} failed (exit {proc.returncode}):\n{tail}")


class PeerServer:
  """The PyTorch peer in a process of its own (``benchmarks.probe --serve``), timing steps on
  request; see :func:`benchmarks.probe.serve_peer` for why not in the harness's process."""

  def __init__(self, name: str, batch: int, dtype: str, opts: Options, device: str):
    cmd, env = _probe_command("peer", name, batch, dtype, opts, device=device)
    self.what = f"peer server {name} {dtype}"
    self.log = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill and block it
    self.proc = subprocess.Popen(cmd + ["--serve"], cwd=_REPO, env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
    _LIVE_CHILDREN.add(self.proc.pid)
    self.hello = self._reply()

  def _reply(self) -> dict[str, Any]:
    for line in self.proc.stdout:
      if line.startswith(probe.MARKER):
        return json.loads(line[len(probe.MARKER):])
    self.proc.wait()
    _LIVE_CHILDREN.discard(self.proc.pid)
    self.log.seek(0)
    tail = "\n".join(self.log.read().strip().splitlines()[-15:])
    raise RuntimeError(f"{self.what} failed (exit {self.proc.returncode}):\n{tail}")

  def steps(self, n: int) -> list[float]:
    """Runs ``n`` peer steps there and returns their times (seconds)."""
    if n <= 0:
      return []
    self.proc.stdin.write(f"{n}\n")
    self.proc.stdin.flush()
    return self._reply()["times"]

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.write("0\n")
      self.proc.stdin.close()
      self.proc.wait(timeout=60)
    _LIVE_CHILDREN.discard(self.proc.pid)  # waited for: its ticks are in our cutime now
    self.log.close()


# --- one workload -------------------------------------------------------------------------------

def _flops(setup: workloads.GenjaxSetup) -> tuple[float | None, str]:
  # XLA counts no FLOPs in custom calls, so the step is lowered from the same method built on
  # XLA's conv kernels (the same function).
  method = runs.build_method(setup.method.config, setup.strategy.axis_name, kernels.XLA)
  lowered = jax.jit(method.step).lower(setup.state, setup.batch)
  for source, get in (("XLA cost analysis (lowered HLO)", lowered.cost_analysis),
                      ("XLA cost analysis (compiled)", lambda: lowered.compile().cost_analysis())):
    try:
      ca = get()
    except Exception:  # pylint: disable=broad-except
      continue
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    if ca and ca.get("flops", 0) > 0:
      return float(ca["flops"]), source
  return None, "unavailable"


def _probes(name: str, batch: int, dtype: str, opts: Options, *, device: str | None,
            cache_dir: str) -> dict[str, Any]:
  """Compile times and peak memory from fresh processes, redone if others disturbed them."""
  log = opts.log
  attempts = 1 + (TIMING_RETRIES if opts.wait_quiet > 0 else 0)
  waited = 0.0
  for attempt in range(1, attempts + 1):
    meter = OtherLoad()
    # The run's shared cache first (this process then loads the step from it); an empty one of
    # its own for each retry, so that its cold compile is cold.
    cache = (cache_dir if attempt == 1 else
             os.path.join(cache_dir, f"retry-{name}-{batch}-{dtype}-{attempt}"))
    log(f"  [{name} {dtype}] compile, cold cache (fresh process)")
    cold = run_probe("genjax", name, batch, dtype, opts, cache_dir=cache)
    log(f"  [{name} {dtype}] compile, warm cache (fresh process)")
    warm = run_probe("genjax", name, batch, dtype, opts, cache_dir=cache)
    peer = {}
    if device is not None:
      log(f"  [{name} {dtype}] peer memory (fresh process)")
      peer = run_probe("peer", name, batch, dtype, opts, device=device)
    share = meter.share()
    if share is None or share <= QUIET or attempt == attempts:
      break
    log(f"  other processes took {share:.0%} of the CPU while probing: probing again")
    waited += wait_quiet(opts.wait_quiet, QUIET, log)
  out = {"compile_s": cold["compile_s"], "compile_warm_s": warm["compile_s"],
         "compile_detail": {side: {k: v for k, v in probed.items()
                                   if k.endswith("_s") and k != "compile_s"}
                            for side, probed in (("cold", cold), ("warm", warm))},
         "peak_mem_mb": warm["peak_mem_mb"], "peak_mem_cold_mb": cold["peak_mem_mb"],
         "mem_source": warm["mem_source"], "xla_memory_mb": warm.get("xla_memory"),
         "other_load_probes": share, "probe_attempts": attempt, "waited_s": waited}
  if peer:
    out.update(peer_peak_mem_mb=peer["peak_mem_mb"], peer_mem_source=peer["mem_source"])
  return out


def measure_workload(name: str, batch: int, dtype: str, opts: Options, *,
                     device: str | None, cache_dir: str) -> dict[str, Any]:
  """One record: interleaved timing in this process plus the fresh-process probes."""
  log = opts.log
  w = workloads.get(name)
  config = workloads.make_config(w, batch, dtype, tiny=opts.dry_run,
                                 conv_backend=opts.conv_backend)
  rec: dict[str, Any] = {"model": name, "description": w.description, "batch": batch,
                         "dtype": dtype, "tiny": opts.dry_run}
  rec["waited_for_quiet_s"] = wait_quiet(opts.wait_quiet, QUIET, log)
  rec["load_start"] = os.getloadavg()[0]
  rec["other_load_before"] = other_load(0.2 if opts.dry_run else 1.0)

  if opts.probes:
    rec.update(_probes(name, batch, dtype, opts, device=device, cache_dir=cache_dir))
    rec["waited_for_quiet_s"] += rec.pop("waited_s")

  log(f"  [{name} {dtype}] steady state, interleaved")
  host_batch = workloads.make_batch(config)
  setup = workloads.build_genjax(config, host_batch)
  rec["conv_backend"] = setup.method.conv_backend.name
  rec["params"] = {role: int(sum(x.size for x in jax.tree.leaves(p)))
                   for role, p in setup.state.params.items()}
  rec["flops_per_step"], rec["flops_source"] = _flops(setup)

  state = setup.state

  def genjax_step() -> float:
    nonlocal state
    t = time.perf_counter()
    state, metrics = setup.step(state, setup.batch)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - t

  sides: dict[str, Callable[[int], list[float]]] = {
      "genjax": lambda n: [genjax_step() for _ in range(n)]}
  peer = None
  if device is not None:
    peer = PeerServer(name, batch, dtype, opts, device)
    if peer.hello["digest"] != probe.params_digest(workloads.networks(setup)):
      raise RuntimeError(f"{peer.what}: its copy of genjax's initial weights differs")
    rec["peer_params"] = peer.hello["params"]
    rec["peer_flops_per_step"] = peer.hello["flops"]
    sides["peer"] = peer.steps

  try:
    t = time.perf_counter()
    genjax_step()  # compiles, from the persistent cache the probes filled when they ran
    rec["first_call_in_harness_s"] = time.perf_counter() - t
    for fn in sides.values():
      fn(opts.warmup)
    block = max(1, min(opts.block, opts.steps))
    rounds = -(-opts.steps // block)
    order = list(sides)
    attempts = 1 + (TIMING_RETRIES if opts.wait_quiet > 0 else 0)
    for attempt in range(1, attempts + 1):
      samples: dict[str, list[float]] = {s: [] for s in sides}
      meter = OtherLoad()
      for r in range(rounds):
        for side in (order if r % 2 == 0 else order[::-1]):
          samples[side].extend(sides[side](block))
      share = meter.share()
      if share is None or share <= QUIET or attempt == attempts:
        break
      log(f"  other processes took {share:.0%} of the CPU while timing: timing again")
      rec["waited_for_quiet_s"] += wait_quiet(opts.wait_quiet, QUIET, log)
  finally:
    if peer is not None:
      peer.close()
  if failure := kernels.take_failure():
    raise RuntimeError(f"{name} {dtype}: {failure}")
  # conv_kernels: 'onednn', 'onednn-float32' (bfloat16 computed in float32) or 'xla'; after the
  # steps were traced, so that it counts primitives that run otherwise too
  rec.update(kernels.record(setup.method.conv_backend, dtype))
  rec["steps_timed"] = len(samples["genjax"])
  rec["other_load_timing"] = share
  rec["timing_attempts"] = attempt

  for side, prefix in (("genjax", ""), ("peer", "peer_")):
    if side not in samples:
      continue
    s = summarize(samples[side])
    rec[f"{prefix}step_ms_median"] = s["median"]
    rec[f"{prefix}step_ms_spread"] = s["iqr"]
    rec[f"{prefix}step_ms_quantiles"] = {k: s[k] for k in ("min", "p25", "median", "p75", "max")}
    rec[f"{prefix}images_per_sec"] = batch / (s["median"] / 1e3)
  if "peer" in samples:
    rec["ratio"] = rec["images_per_sec"] / rec["peer_images_per_sec"]
  rec["load_end"] = os.getloadavg()[0]
  return rec


# --- the suite ----------------------------------------------------------------------------------

RECORD_DEFAULTS = ("peer_images_per_sec", "ratio", "compile_s", "compile_warm_s", "mfu",
                   "peer_mfu", "peer_step_ms_median", "peer_step_ms_spread", "peak_mem_mb",
                   "peer_peak_mem_mb", "peer_flops_per_step")


def run_suite(opts: Options) -> list[dict[str, Any]]:
  """Runs every (model, dtype) of ``opts`` and returns the records."""
  log = opts.log
  backend = jax.default_backend()
  if opts.dtypes is None:
    opts = dataclasses.replace(opts, dtypes=default_dtypes(backend, log))
  torch = torch_or_none()
  device = peer_device(backend) if opts.peer else None
  if opts.peer and device is None:
    log(f"no PyTorch peer: torch is {'missing' if torch is None else 'without a ' + backend}")
  threads = num_cores()
  if torch is not None:
    torch.set_num_threads(threads)
    if device == "cuda":
      torch.backends.cudnn.benchmark = True
  meta = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "suite": "dry-run" if opts.dry_run else opts.suite,
      "backend": backend, "device": device_description(backend),
      "cpu_isa": host.cpu_isa() if backend == "cpu" else None,
      "isa_cap": isa_cap() if backend == "cpu" else None,
      "num_devices": jax.device_count(), "peer": "PyTorch eager" if device else None,
      "peer_device": device, "threads": threads, "steps": opts.steps, "warmup": opts.warmup,
      "block": opts.block, "peer_channels_last": opts.peer_channels_last,
      "malloc": "tuned" if opts.tune_malloc else "default",
      "dry_run": opts.dry_run, "python_version": platform.python_version(),
      "jax_version": jax.__version__, "torch_version": getattr(torch, "__version__", None),
  }
  try:
    import flax  # pylint: disable=g-import-not-at-top
    meta["flax_version"] = flax.__version__
  except ImportError:
    pass
  log(f"genjax benchmark on {meta['device']} ({backend}); peer: {device or 'none'}; "
      f"load average {os.getloadavg()[0]:.2f} on {threads} cores")

  records = []
  with tempfile.TemporaryDirectory(prefix="genjax-bench-cache-") as cache_dir:
    # One persistent cache for the run, shared by this process and the probes: a program's first
    # compile anywhere is the cold probe's (every (model, batch, dtype) is a different program),
    # and this process then loads it instead of compiling again.
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    wait_quiet(opts.wait_quiet, QUIET, log)
    log("machine peak: large GEMMs")
    peaks = machine_peaks(opts.dtypes, backend, device, dry_run=opts.dry_run)
    for dtype, p in peaks.items():
      log(f"  {dtype}: {p['peak_flops'] / 1e9:.1f} GFLOP/s ({p['peak_source']})")
    pipelines = {}
    for batch in sorted({b for _, b in opts.models}):
      log(f"input pipeline at batch {batch}")
      pipelines[batch] = measure_pipeline(batch, dry_run=opts.dry_run)

    for name, batch in opts.models:
      for dtype in opts.dtypes:
        rec = {**meta, **{k: None for k in RECORD_DEFAULTS}}
        rec.update(measure_workload(name, batch, dtype, opts, device=device,
                                    cache_dir=cache_dir))
        rec.update(pipelines[batch])
        records.append(rec)
        log("  " + one_line(rec))
    wait_quiet(opts.wait_quiet, QUIET, log)
    log("machine peak again")
    peaks = machine_peaks(opts.dtypes, backend, device, dry_run=opts.dry_run, earlier=peaks)
  for rec in records:
    rec.update(peaks[rec["dtype"]])
    for prefix in ("", "peer_"):
      median = rec.get(f"{prefix}step_ms_median")
      if rec["flops_per_step"] and median:
        rec[f"{prefix}mfu"] = rec["flops_per_step"] / (median / 1e3) / rec["peak_flops"]
  for dtype, p in peaks.items():
    log(f"  {dtype}: {p['peak_flops'] / 1e9:.1f} GFLOP/s ({p['peak_source']})")
  return records


def _fmt(v: float | None, spec: str) -> str:
  return "-" if v is None else format(v, spec)


def one_line(rec: dict[str, Any]) -> str:
  return (f"{rec['model']} b{rec['batch']} {rec['dtype']}: genjax {rec['images_per_sec']:.1f} "
          f"img/s, peer {_fmt(rec['peer_images_per_sec'], '.1f')} img/s, ratio "
          f"{_fmt(rec['ratio'], '.2f')}, compile {_fmt(rec['compile_s'], '.1f')}s / warm "
          f"{_fmt(rec['compile_warm_s'], '.1f')}s")
