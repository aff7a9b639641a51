"""Which kernels genjax's convolution layers run: XLA's, or oneDNN's through XLA's FFI (CPU).

The choice is a :class:`ConvBackend`, a static field of every conv layer of
:mod:`genjax.models.layers`, given to a network when it is built (the methods set it on their
networks from ``config.conv_backend``, resolved once by the launcher with :func:`resolve`). A
traced program depends on its networks alone: two networks on different kernels can be traced
in one process, and a network built without one runs on XLA's kernels (:data:`XLA`).

- ``'xla'``: ``lax`` convolutions; transposed convolutions by the phase decomposition (or
  ``lax.conv_transpose``) that the layer's ``impl`` names.
- ``'onednn'``: every conv and transposed conv of :mod:`genjax.models.layers` is a custom call
  into oneDNN primitives (``onednn_conv.cc``: forward, backward-data, backward-weights),
  differentiated (to any order, in reverse mode) by those primitives too (a forward conv with
  at most 16 output pixels and a kernel of 2^21 or more weights, or with a 1x1 output, runs as
  im2col + oneDNN's matmul, which is faster there). On the 2-core AVX-512 CPU here they take
  about half XLA:CPU's time (see benchmarks/results/README.md). CPU only,
  float32 and bfloat16. Under the ``mesh`` strategy each custom call runs on every device's
  shard of the batch (``shard_map``); under ``pmap`` per device. The library is compiled on
  first use into ``~/.cache/genjax/kernels`` (``GENJAX_KERNEL_DIR``; needs ``g++``), against
  oneDNN 3.2 from the wheel ``onednn-devel-cpu-gomp`` on CPUs without AVX-512 and Debian's
  ``libdnnl-dev`` (2.6) on AVX-512 ones (:func:`onednn`; ``GENJAX_ONEDNN=wheel|system``).
- ``'auto'`` (the config's default): ``'onednn'`` where it builds and loads, else ``'xla'``
  (:func:`resolve` decides, once).

Not every CPU's oneDNN has every primitive in every dtype: neither oneDNN 2.6 nor 3.2 has a
bfloat16 convolution on CPUs without AVX-512 (AVX2 only). So each primitive is probed once per
process, when a step is traced (the probe builds and caches the exact primitive the call will
run), and where the compute dtype's primitive cannot be created the call computes in float32 on
oneDNN and rounds, or, where that cannot be created either, runs on XLA's kernels. Nothing fails
inside a step. :func:`oneDNN_dtype` answers for a whole dtype at start-up: ``'auto'`` logs the
choice, ``'onednn'`` with a dtype it lacks is a :class:`~genjax.errors.ConfigError`, and
:func:`record` is what runs write into checkpoints, metrics and benchmark JSON.

Both backends compute the same function with the same parameters; they differ in rounding only.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import os
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from genjax import errors, host

BACKENDS = ("auto", "xla", "onednn")
SOURCE = Path(__file__).with_name("onednn_conv.cc")
_TARGETS = {"fwd": "GenjaxOnednnConvFwd", "bwd_data": "GenjaxOnednnConvBwdData",
            "bwd_weights": "GenjaxOnednnConvBwdWeights"}
_state = {"library": None, "exceptions": {}}
_KINDS = {"fwd": 0, "bwd_data": 1, "bwd_weights": 2}
# dtypes whose primitives the probes report as unsupported whatever oneDNN says: tests force the
# fallback with it (see pretend_unsupported) on CPUs whose oneDNN has them.
_pretend: set[str] = set()


@dataclasses.dataclass(frozen=True)
class ConvBackend:
  """The kernels of a network's convolutions: a static field of its conv layers, part of its
  graph definition (hashable), so every program traced from the network runs on them.

  Attributes:
    name: ``'xla'`` or ``'onednn'``.
    mesh: ``'onednn'`` only: a one-axis mesh over which the batch of activations is sharded
      (the ``mesh`` strategy's, several devices): each custom call then runs on every device's
      shard (``shard_map``), with the kernel gradient summed over it. None: whole batches.
  """
  name: str = "xla"
  mesh: jax.sharding.Mesh | None = None

  def __post_init__(self):
    errors.check_choice("conv backend", self.name, BACKENDS[1:])
    if self.mesh is not None and len(self.mesh.axis_names) != 1:
      raise ValueError(f"conv backend mesh must have one (batch) axis, got {self.mesh.axis_names}")


XLA = ConvBackend()  # what layers built without a backend run on


def resolve(name: str, *, mesh: jax.sharding.Mesh | None = None,
            dtype: str = "float32") -> ConvBackend:
  """The backend ``config.conv_backend = name`` stands for in this process, for networks
  computing in ``dtype`` whose activations are batch-sharded over ``mesh`` (see
  :class:`ConvBackend`; kept for ``'onednn'`` only).

  ``'onednn'`` builds/loads its library here, so a missing compiler or oneDNN is reported at
  start-up, and raises a ConfigError where oneDNN cannot create ``dtype`` convolutions;
  ``'auto'`` is ``'onednn'`` on a CPU backend where the library builds and loads and can create
  ``dtype`` or float32 convolutions (bfloat16 then computes in float32), else ``'xla'`` (it logs
  why).
  """
  errors.check_choice("conv backend", name, BACKENDS)
  if name == "auto" and jax.default_backend() != "cpu":
    name = "xla"  # the oneDNN kernels are CPU kernels
  elif name == "auto":
    try:
      _load()
      name = "onednn"
    except errors.KernelError as e:
      logging.warning("conv backend 'auto' falls back to 'xla': %s", e)
      name = "xla"
    if name == "onednn" and onednn_dtype(dtype) is None:
      logging.warning("conv backend 'auto' falls back to 'xla': %s cannot run a %s or float32 "
                      "convolution (%s)", info(), dtype, _why(dtype))
      name = "xla"
  elif name == "onednn":
    _load()
    if onednn_dtype(dtype) != dtype:
      raise errors.ConfigError(
          f"config.conv_backend=onednn: this CPU's {info()} cannot create {dtype} convolutions "
          f"({_why(dtype)}); use --config.conv_backend=auto (it computes them in float32 on "
          f"oneDNN), --config.conv_backend=xla or --config.dtype=float32")
  return ConvBackend(name, mesh if name == "onednn" else None)


# The compiler's flags besides its include dir, source and output; part of the library's key.
CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-Wno-return-type")
BUILD_TIMEOUT_S = 600  # a compiler that takes longer is reported, not waited for forever


def _compiler() -> str:
  return os.environ.get("CXX", "g++")


@functools.cache
def _compiler_identity(cxx: str) -> str:
  """The first line of ``cxx --version`` (or why there is none): part of the library's key."""
  try:
    proc = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired) as e:
    return f"{cxx}: {type(e).__name__}"
  lines = (proc.stdout or proc.stderr).strip().splitlines()
  return f"{cxx}: {lines[0] if lines else proc.returncode}"


# --- which oneDNN the library is built against ----------------------------------------------
#
# Two installs can provide it: the wheel ``onednn-devel-cpu-gomp`` (oneDNN 3.2 on GNU OpenMP, a
# dependency of genjax on x86-64 Linux: its headers and libdnnl.so.3 land in the environment's
# include/ and lib/) and the system's (Debian's ``libdnnl-dev``, oneDNN 2.6, or one on CPATH).
# ``GENJAX_ONEDNN=wheel|system`` picks one. By default CPUs without AVX-512 take the wheel's:
# on the 2-core AVX2-only EPYC its brgemm convolutions (2.6 has none for AVX2) took genjax from
# 0.72-0.95x of PyTorch's training speed to 0.93-1.06x (benchmarks/results/README.md); AVX-512
# CPUs keep the system's, measured there (the wheel's is not yet). Each falls back to the other
# where it is missing.
ONEDNN_SOURCES = ("auto", "wheel", "system")
WHEEL = "onednn-devel-cpu-gomp==2023.2.0"
_VERSION_HEADER = Path("oneapi", "dnnl", "dnnl_version.h")  # below an install's include dir


class OneDNN(NamedTuple):
  """An install of oneDNN: ``source`` is ``'wheel'`` or ``'system'``; ``include`` holds
  ``oneapi/dnnl/dnnl.hpp`` (None: none found, the build then says so); ``lib`` is the wheel's
  library dir, linked with a run path to it (None: the linker's default dirs)."""
  source: str
  include: Path | None
  lib: Path | None = None

  def version_header(self) -> bytes:
    header = self.include and self.include / _VERSION_HEADER
    return header.read_bytes() if header and header.exists() else b""

  def flags(self) -> list[str]:
    """The compiler's arguments for it (include dir, library and its run path)."""
    if self.lib is None:
      return ["-ldnnl"]  # the compiler's own include dirs and CPATH hold the headers
    return ["-I", str(self.include), "-L", str(self.lib), f"-Wl,-rpath,{self.lib}", "-ldnnl"]


def _wheel() -> OneDNN | None:
  data = Path(sysconfig.get_paths()["data"])  # where pip puts a wheel's data files
  include, lib = data / "include", data / "lib"
  if (include / _VERSION_HEADER).exists() and (lib / "libdnnl.so").exists():
    return OneDNN("wheel", include, lib)
  return None


def _system() -> OneDNN | None:
  dirs = [*filter(None, os.environ.get("CPATH", "").split(os.pathsep)),
          *filter(None, os.environ.get("CPLUS_INCLUDE_PATH", "").split(os.pathsep)),
          "/usr/local/include", "/usr/include"]
  for d in dirs:
    if (Path(d) / _VERSION_HEADER).exists():
      return OneDNN("system", Path(d))
  return None


def onednn() -> OneDNN:
  """The oneDNN install the library is built against (see ``GENJAX_ONEDNN`` above)."""
  choice = os.environ.get("GENJAX_ONEDNN", "auto")
  errors.check_choice("GENJAX_ONEDNN", choice, ONEDNN_SOURCES, errors.ConfigError)
  if choice == "auto":
    order = (_system, _wheel) if host.cpu_isa().startswith("avx512") else (_wheel, _system)
  else:
    order = (_wheel,) if choice == "wheel" else (_system,)
  found = next((install for find in order if (install := find()) is not None), None)
  if found is None and choice != "auto":
    raise errors.KernelError(
        f"GENJAX_ONEDNN={choice}: no oneDNN there ("
        + (f"pip install {WHEEL}" if choice == "wheel" else "apt-get install libdnnl-dev") + ")")
  return found or OneDNN("system", None)


def library_path(install: OneDNN | None = None) -> Path:
  """Where the library built against ``install`` (default :func:`onednn`) lives: keyed by the
  source, jaxlib's FFI headers, the compiler (its ``--version``), its flags, and oneDNN's
  install and version header."""
  include = Path(jax.ffi.include_dir())
  install = install or onednn()
  digest = hashlib.sha256(SOURCE.read_bytes())
  digest.update((include / "xla/ffi/api/api.h").read_bytes())
  digest.update(_compiler_identity(_compiler()).encode())
  digest.update(" ".join([*CXX_FLAGS, *install.flags()]).encode())
  digest.update(install.version_header())
  root = Path(os.environ.get("GENJAX_KERNEL_DIR", "~/.cache/genjax/kernels")).expanduser()
  return root / f"onednn_conv-{digest.hexdigest()[:16]}.so"


def build() -> Path:
  """Compiles ``onednn_conv.cc`` unless this source's library exists; returns its path."""
  install = onednn()
  out = library_path(install)
  if out.exists():
    return out
  errors.make_folder(out.parent, "the kernels' folder", errors.KernelError,
                     fix=": set GENJAX_KERNEL_DIR to a writable folder or use "
                         "--config.conv_backend=xla")
  fix = (f"install g++ and oneDNN (apt-get install g++; pip install {WHEEL} or apt-get "
         f"install libdnnl-dev) or use --config.conv_backend=xla")
  with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
    tmp_out = Path(tmp) / out.name
    cmd = [_compiler(), *CXX_FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o",
           str(tmp_out), *install.flags()]
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except FileNotFoundError:
      proc = None
    except subprocess.TimeoutExpired:
      raise errors.KernelError(f"cannot build genjax's oneDNN kernels ({cmd[0]} did not finish "
                               f"within {BUILD_TIMEOUT_S} s): {fix}") from None
    if proc is None or proc.returncode:
      first = "compiler not found" if proc is None else next(
          (line for line in proc.stderr.splitlines() if "error" in line),
          proc.stderr.strip()[-200:])
      raise errors.KernelError(f"cannot build genjax's oneDNN kernels ({first.strip()}): {fix}")
    os.replace(tmp_out, out)  # atomic: concurrent builders leave one whole library
  return out


def _load() -> ctypes.CDLL:
  if _state["library"] is None:
    if jax.default_backend() != "cpu":
      raise errors.KernelError(f"conv backend 'onednn' runs on CPU only; this process's JAX "
                               f"backend is {jax.default_backend()!r}: use "
                               f"--config.conv_backend=xla")
    path = build()
    try:
      lib = ctypes.cdll.LoadLibrary(str(path))
    except OSError:  # a corrupt cached library (a full disk, a killed copy): built again, once
      logging.warning("genjax's cached oneDNN kernels %s do not load: building them again", path)
      path.unlink(missing_ok=True)
      path = build()
      try:
        lib = ctypes.cdll.LoadLibrary(str(path))
      except OSError as e:  # e.g. libdnnl.so removed since oneDNN's headers were installed
        raise errors.KernelError(f"cannot load genjax's oneDNN kernels ({e}): reinstall oneDNN "
                                 f"(pip install {WHEEL} or apt-get install libdnnl-dev) or use "
                                 f"--config.conv_backend=xla") from None
    for kind, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(f"genjax_onednn_conv_{kind}",
                                  jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    lib.GenjaxOnednnConvProbe.restype = ctypes.c_int
    lib.GenjaxOnednnConvProbe.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_int64]
    lib.GenjaxOnednnInfo.argtypes = [ctypes.c_char_p, ctypes.c_int64]
    lib.GenjaxOnednnInjectFailures.argtypes = [ctypes.c_int64]
    lib.GenjaxOnednnTakeFailure.argtypes = [ctypes.c_char_p, ctypes.c_int64]
    _state["library"] = lib
  return _state["library"]


class Geometry(NamedTuple):
  """A convolution C from src (B, H, W, I) to dst (B, OH, OW, O). Its kernel is stored
  (kh, kw, I, O) (HWIO), or (kh, kw, O, I) when ``transposed`` (a transposed conv's own kernel,
  the transposed conv being C's input-gradient)."""
  src_hw: tuple[int, int]
  kernel_hw: tuple[int, int]
  strides: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  transposed: bool


# --- which primitives this CPU's oneDNN can create ----------------------------------------------

def info() -> str:
  """``"oneDNN <version> <ISA it dispatches to>"``, e.g. ``"oneDNN 2.6.3 avx2"``."""
  out = ctypes.create_string_buffer(128)
  _load().GenjaxOnednnInfo(out, len(out))
  return out.value.decode()


@functools.cache
def _probe_library(kind: str, dtype: str, dims: tuple[int, ...], transposed: bool,
                   geo: tuple[int, ...]) -> str | None:
  msg = ctypes.create_string_buffer(256)
  failed = _load().GenjaxOnednnConvProbe(
      _KINDS[kind], int(dtype == "bfloat16"), (ctypes.c_int64 * 12)(*dims), int(transposed),
      (ctypes.c_int64 * 6)(*geo), msg, len(msg))
  return (msg.value.decode() or "failed") if failed else None


def probe(kind: str, dtype: str, src: tuple[int, ...], dst: tuple[int, ...],
          weights: tuple[int, ...], geo: Geometry) -> str | None:
  """Whether oneDNN can create the ``kind`` primitive of one call in ``dtype`` on this CPU:
  None if it can (the primitive is then built and cached for the call), else oneDNN's reason.
  ``src``/``dst`` are NHWC shapes, ``weights`` the (kh, kw, A, B) buffer's. Once per process
  and geometry."""
  if dtype in _pretend:
    return f"{dtype} reported unsupported (pretend_unsupported)"
  nchw = lambda s: (s[0], s[3], s[1], s[2])
  (pt, pb), (pl, pr) = geo.padding
  return _probe_library(kind, dtype, (*nchw(src), *nchw(dst), *weights), geo.transposed,
                        (*geo.strides, pt, pb, pl, pr))


# One small conv (4x4, stride 2, padding 1: 8x8x16 -> 4x4x32) stands for all at start-up.
_SAMPLE = ((2, 8, 8, 16), (2, 4, 4, 32), (4, 4, 16, 32),
           Geometry((8, 8), (4, 4), (2, 2), ((1, 1), (1, 1)), False))


def _why(dtype: str) -> str | None:
  """The first reason oneDNN gives for not creating the sample conv's primitives in ``dtype``
  (None if it creates all three)."""
  src, dst, weights, geo = _SAMPLE
  return next((why for kind in _KINDS
               if (why := probe(kind, dtype, src, dst, weights, geo)) is not None), None)


def onednn_dtype(dtype: str) -> str | None:
  """The dtype oneDNN computes convolutions of compute dtype ``dtype`` in on this CPU:
  ``dtype`` itself where it can create the three primitives in it, else ``'float32'`` (inputs
  rounded up, results rounded back), else None (XLA's kernels)."""
  for candidate in dict.fromkeys((dtype, "float32")):
    if _why(candidate) is None:
      return candidate
  return None


@contextlib.contextmanager
def pretend_unsupported(*dtypes: str):
  """Within the block, the probes report ``dtypes``' primitives as unsupported, as an AVX2-only
  CPU's oneDNN 2.6 does bfloat16's (tests force the fallback with it on every CPU)."""
  previous = set(_pretend)
  _pretend.update(dtypes)
  try:
    yield
  finally:
    _pretend.clear()
    _pretend.update(previous)


def record(backend: ConvBackend, dtype: str) -> dict[str, Any]:
  """What convolutions of compute ``dtype`` run on, on ``backend``: saved with checkpoints,
  evaluation metrics and benchmark records. ``conv_kernels`` is ``'xla'``, ``'onednn'`` or
  ``'onednn-float32'`` (bfloat16 computed in float32 by oneDNN); primitives traced so far that
  run otherwise (a geometry oneDNN lacks) are counted in ``primitives_in_float32`` and
  ``primitives_on_xla``."""
  out: dict[str, Any] = {"conv_kernels": "xla"}
  if backend.name == "onednn":
    computed = onednn_dtype(dtype)
    out = {"conv_kernels": "onednn" if computed == dtype else f"onednn-{computed}",
           "onednn": info()}
    exceptions = [c for (_, d, *_), c in _state["exceptions"].items() if d == dtype]
    if exceptions:  # primitives traced so far that run otherwise (see _compute_dtype)
      out["primitives_in_float32"] = exceptions.count("float32")
      out["primitives_on_xla"] = exceptions.count(None)
  return out


def describe(backend: ConvBackend, dtype: str) -> str:
  """One line for the log: which kernels ``dtype`` convolutions run on, on ``backend``, and
  why."""
  kind = record(backend, dtype)["conv_kernels"]
  if kind == "xla":
    return "xla"
  if kind == "onednn":
    return f"onednn ({info()}, {dtype})"
  return (f"onednn ({info()}): {dtype} convolutions compute in float32 and round, as this "
          f"CPU's oneDNN cannot create them ({_why(dtype)})")


def inject_failures(n: int) -> None:
  """Makes the next ``n`` oneDNN custom calls of this process fail (tests)."""
  _load().GenjaxOnednnInjectFailures(n)


def take_failure() -> str | None:
  """The first error of a oneDNN call since the last check, or None; clears it.

  A call that fails at run time fills its result with NaN and keeps its error here instead of
  failing the step: on several devices a failed device's part of a step would leave the others
  waiting in a collective, and XLA ends the process when that times out. Whoever runs steps
  checks this after waiting for them (the trainer does at every log, sample and checkpoint).
  """
  if _state["library"] is None:
    return None
  out = ctypes.create_string_buffer(512)
  return out.value.decode() if _state["library"].GenjaxOnednnTakeFailure(out, len(out)) else None


def _call(kind: str, shape, first, second, geo: Geometry, mesh: jax.sharding.Mesh | None):
  """One custom call; ``shape`` is the global result shape. On a batch ``mesh`` each device
  runs it on its shard of the batch (both inputs batched for the kernel gradient, which is then
  summed over the mesh)."""
  (pt, pb), (pl, pr) = geo.padding

  def call(a, b):
    local = shape if kind == "bwd_weights" else (a.shape[0], *shape[1:])
    dtype = a.dtype
    compute = _compute_dtype(kind, a.shape, b.shape, local, geo, dtype.name)
    if compute is None:
      return _lax_primitive(kind, local, a, b, geo)
    a, b = a.astype(compute), b.astype(compute)
    out = jax.ffi.ffi_call(f"genjax_onednn_conv_{kind}", jax.ShapeDtypeStruct(local, compute),
                           vmap_method="sequential")(
        a, b, sh=np.int64(geo.strides[0]), sw=np.int64(geo.strides[1]), pt=np.int64(pt),
        pb=np.int64(pb), pl=np.int64(pl), pr=np.int64(pr), transposed=geo.transposed)
    return out.astype(dtype)

  if mesh is None or first.shape[0] % mesh.size:  # unshardable batches run whole
    return call(first, second)
  (axis,) = mesh.axis_names
  if kind == "bwd_weights":
    return jax.shard_map(lambda a, b: jax.lax.psum(call(a, b), axis), mesh=mesh,
                         in_specs=(P(axis), P(axis)), out_specs=P(), check_vma=False)(
        first, second)
  return jax.shard_map(call, mesh=mesh, in_specs=(P(axis), P()), out_specs=P(axis),
                       check_vma=False)(first, second)


def _compute_dtype(kind: str, first, second, out, geo: Geometry, dtype: str) -> str | None:
  """The dtype this call runs in on oneDNN (``dtype``, else float32), or None for XLA's kernels,
  from the probes of its exact primitive; a fallback is logged once per primitive."""
  src, dst, weights = {"fwd": (first, out, second), "bwd_data": (out, first, second),
                       "bwd_weights": (first, second, out)}[kind]
  why = None
  for candidate in dict.fromkeys((dtype, "float32")):
    if (reason := probe(kind, candidate, src, dst, weights, geo)) is None:
      if candidate != onednn_dtype(dtype):  # else the start-up line said so
        _note_exception(kind, dtype, src, dst, weights, geo, candidate, why)
      return candidate
    why = why or reason
  _note_exception(kind, dtype, src, dst, weights, geo, None, why)
  return None


def _note_exception(kind, dtype, src, dst, weights, geo, compute, why) -> None:
  """Logs (once) and counts a primitive that runs otherwise than its dtype's start-up answer."""
  key = (kind, dtype, src, dst, weights, geo)
  if key not in _state["exceptions"]:
    _state["exceptions"][key] = compute
    logging.warning("onednn conv %s %s %s: %s, as oneDNN cannot create it (%s)", kind, dtype,
                    key[2:], f"computed in {compute}" if compute else "on XLA's kernels", why)


def _lax_primitive(kind: str, shape, first, second, geo: Geometry):
  """One primitive (see :func:`_call`) by XLA's convolutions: the conv, or its VJP in the
  activations or in the kernel."""
  transposed = geo.transposed

  def conv(src, kernel):  # kernel in its buffer layout, (kh, kw, O, I) when transposed
    hwio = kernel.transpose(0, 1, 3, 2) if transposed else kernel
    return jax.lax.conv_general_dilated(src, hwio, geo.strides, geo.padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  if kind == "fwd":
    return conv(first, second)
  if kind == "bwd_data":
    return jax.vjp(lambda s: conv(s, second), jnp.zeros(shape, first.dtype))[1](first)[0]
  return jax.vjp(lambda k: conv(first, k), jnp.zeros(shape, first.dtype))[1](second)[0]


# C's three primitives are bilinear, and each one's VJP is made of the other two, so every
# order of reverse-mode differentiation (e.g. a gradient penalty's) stays on oneDNN. ``mesh``
# (static, like the geometry) is the batch mesh each call is mapped over (see _call).

@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _fwd(src, kernel, geo: Geometry, mesh):
  """dst = C(src; kernel)."""
  (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = geo.kernel_hw, geo.strides, geo.padding
  o = kernel.shape[2] if geo.transposed else kernel.shape[3]
  shape = (src.shape[0], (src.shape[1] + pt + pb - kh) // sh + 1,
           (src.shape[2] + pl + pr - kw) // sw + 1, o)
  return _call("fwd", shape, src, kernel, geo, mesh)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _bwd_data(dst, kernel, geo: Geometry, mesh):
  """src-space = C^T(dst; kernel), the input-gradient of C."""
  i = kernel.shape[3] if geo.transposed else kernel.shape[2]
  return _call("bwd_data", (dst.shape[0], *geo.src_hw, i), dst, kernel, geo, mesh)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _bwd_weights(src, dst, geo: Geometry, mesh):
  """kernel-space: the kernel-gradient of <C(src; kernel), dst>."""
  i, o = src.shape[3], dst.shape[3]
  return _call("bwd_weights", (*geo.kernel_hw, *((o, i) if geo.transposed else (i, o))), src,
               dst, geo, mesh)


def _fwd_bwd(geo, mesh, res, g):
  src, kernel = res
  return _bwd_data(g, kernel, geo, mesh), _bwd_weights(src, g, geo, mesh)


def _bwd_data_bwd(geo, mesh, res, g):
  dst, kernel = res
  return _fwd(g, kernel, geo, mesh), _bwd_weights(g, dst, geo, mesh)


def _bwd_weights_bwd(geo, mesh, res, g):
  src, dst = res
  return _bwd_data(dst, g, geo, mesh), _fwd(src, g, geo, mesh)


def _saving_inputs(prim):
  return lambda a, b, geo, mesh: (prim(a, b, geo, mesh), (a, b))


for _prim, _bwd in ((_fwd, _fwd_bwd), (_bwd_data, _bwd_data_bwd),
                    (_bwd_weights, _bwd_weights_bwd)):
  _prim.defvjp(_saving_inputs(_prim), _bwd)


def _check(x, kernel):
  if x.dtype != kernel.dtype or x.dtype.name not in ("float32", "bfloat16"):
    raise TypeError(f"onednn conv: x and kernel must both be float32 or bfloat16, got "
                    f"{x.dtype} and {kernel.dtype}")
  if x.ndim != 4 or kernel.ndim != 4 or x.shape[3] != kernel.shape[2]:
    raise ValueError(f"onednn conv: x (B, H, W, C) and kernel (kh, kw, C, out) must agree, got "
                     f"{x.shape} and {kernel.shape}")
  _load()


def onednn_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]], *,
                mesh: jax.sharding.Mesh | None = None) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, padding, ('NHWC', 'HWIO', 'NHWC'))`` by
  oneDNN, differentiable in ``x`` and ``kernel``; per device shard of the batch on a batch
  ``mesh`` (:class:`ConvBackend`)."""
  _check(x, kernel)
  geo = Geometry(tuple(x.shape[1:3]), tuple(kernel.shape[:2]), tuple(int(s) for s in strides),
                 tuple(tuple(int(p) for p in pair) for pair in padding), False)
  return _fwd(x, kernel, geo, mesh)


def transposed_output_hw(in_hw: tuple[int, int], kernel_hw: tuple[int, int],
                         stride: tuple[int, int], padding: tuple[int, int],
                         output_padding: tuple[int, int]) -> tuple[int, int]:
  """PyTorch's ``ConvTranspose2d`` output size, ``(H - 1) * stride - 2 * padding + k +
  output_padding`` per axis; a ValueError where it would be empty."""
  (h, w), (kh, kw), (sy, sx), (py, px), (opy, opx) = (in_hw, kernel_hw, stride, padding,
                                                     output_padding)
  out_h, out_w = (h - 1) * sy - 2 * py + kh + opy, (w - 1) * sx - 2 * px + kw + opx
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f"conv_transpose output would be empty: input {h}x{w}, kernel {kh}x{kw}, "
                     f"stride {(sy, sx)}, padding {(py, px)}")
  return out_h, out_w


def onednn_conv_transpose(x: jax.Array, kernel: jax.Array, stride: tuple[int, int],
                          padding: tuple[int, int], output_padding: tuple[int, int], *,
                          mesh: jax.sharding.Mesh | None = None) -> jax.Array:
  """PyTorch's ``ConvTranspose2d`` (kernel (kh, kw, in, out), integer padding; see
  :func:`genjax.models.layers.conv_transpose`) by oneDNN: the input-gradient of the conv from
  its output space back to its input space, padded (padding, padding - output_padding); per
  device shard of the batch on a batch ``mesh``.

  Output rows/columns past ``(H - 1) * stride - padding + k`` receive no input; where
  ``output_padding > padding`` asks for them, they are zeros appended to the result.
  """
  _check(x, kernel)
  kh, kw = kernel.shape[:2]
  (sy, sx), (py, px), (opy, opx) = stride, padding, output_padding
  out_h, out_w = transposed_output_hw(x.shape[1:3], (kh, kw), stride, padding, output_padding)
  ey, ex = max(0, opy - py), max(0, opx - px)  # all-zero rows/columns at the end
  geo = Geometry((out_h - ey, out_w - ex), (kh, kw), (int(sy), int(sx)),
                 ((int(py), int(py - opy + ey)), (int(px), int(px - opx + ex))), True)
  y = _bwd_data(x, kernel, geo, mesh)
  return jnp.pad(y, ((0, 0), (0, ey), (0, ex), (0, 0))) if ey or ex else y
