"""Which kernels genjax's convolution layers run: XLA's, or oneDNN's through XLA's FFI (CPU).

``conv_backend`` is a process setting, like an XLA flag: ``set_conv_backend('onednn')`` (the
trainer does it from ``config.conv_backend``) before the step is traced, or the
:func:`use_conv_backend` context for a block of code.

- ``'xla'`` (default): ``lax`` convolutions; transposed convolutions by the phase decomposition
  (or ``lax.conv_transpose``) that the layer's ``impl`` names.
- ``'onednn'``: every conv and transposed conv of :mod:`genjax.models.layers` is a custom call
  into oneDNN 2.x primitives (``onednn_conv.cc``: forward, backward-data, backward-weights), with
  a ``custom_vjp`` whose gradients are those primitives too. On the 2-core AVX-512 CPU here the
  discriminator's 4x4/stride-2 conv takes half XLA:CPU's time forward and backward (see
  benchmarks/results/README.md). CPU only, float32 and bfloat16, one device per process or
  ``config.parallel='pmap'`` (the custom calls have no SPMD partitioning rule). The library is
  compiled on first use into ``~/.cache/genjax/kernels`` (needs ``g++`` and ``libdnnl-dev``).

Both backends compute the same function with the same parameters; they differ in rounding only.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import jax
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from genjax import errors

BACKENDS = ("auto", "xla", "onednn")
SOURCE = Path(__file__).with_name("onednn_conv.cc")
_TARGETS = {"fwd": "GenjaxOnednnConvFwd", "bwd_data": "GenjaxOnednnConvBwdData",
            "bwd_weights": "GenjaxOnednnConvBwdWeights"}
_state = {"backend": "xla", "mesh": None, "library": None}


def conv_backend() -> str:
  """The backend conv layers trace with now: 'xla' or 'onednn'."""
  return _state["backend"]


def set_conv_backend(name: str, *, mesh: jax.sharding.Mesh | None = None) -> str:
  """Selects the kernels of conv layers traced from now on (jitted functions already traced
  keep theirs) and returns the backend chosen.

  ``'onednn'`` builds/loads its library here, so a missing compiler or oneDNN is reported at
  start-up; ``'auto'`` is ``'onednn'`` on a CPU backend where the library builds and loads, and
  ``'xla'`` elsewhere (saying why in the log). ``mesh``: a one-axis mesh over which the batch
  of activations is sharded (the ``mesh`` strategy's, several devices): each custom call then
  runs on every device's shard (``shard_map``), with the kernel gradient summed over the axis.
  """
  errors.check_choice("conv backend", name, BACKENDS)
  if name == "auto":
    try:
      _load()
      name = "onednn"
    except errors.KernelError as e:
      logging.warning("conv backend 'auto' falls back to 'xla': %s", e)
      name = "xla"
  elif name == "onednn":
    _load()
  if mesh is not None and len(mesh.axis_names) != 1:
    raise ValueError(f"conv backend mesh must have one (batch) axis, got {mesh.axis_names}")
  _state["backend"], _state["mesh"] = name, mesh
  return name


@contextlib.contextmanager
def use_conv_backend(name: str, *, mesh: jax.sharding.Mesh | None = None):
  previous = _state["backend"], _state["mesh"]
  set_conv_backend(name, mesh=mesh)
  try:
    yield
  finally:
    _state["backend"], _state["mesh"] = previous


def library_path() -> Path:
  """Where the compiled library lives: keyed by the source and jaxlib's FFI headers."""
  include = Path(jax.ffi.include_dir())
  digest = hashlib.sha256(SOURCE.read_bytes())
  digest.update((include / "xla/ffi/api/api.h").read_bytes())
  root = Path(os.environ.get("GENJAX_KERNEL_DIR", "~/.cache/genjax/kernels")).expanduser()
  return root / f"onednn_conv-{digest.hexdigest()[:16]}.so"


def build() -> Path:
  """Compiles ``onednn_conv.cc`` unless this source's library exists; returns its path."""
  out = library_path()
  if out.exists():
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
    tmp_out = Path(tmp) / out.name
    cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC",
           "-Wno-return-type", "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(tmp_out),
           "-ldnnl"]
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
      proc = None
    if proc is None or proc.returncode:
      first = "compiler not found" if proc is None else next(
          (l for l in proc.stderr.splitlines() if "error" in l), proc.stderr.strip()[-200:])
      raise errors.KernelError(
          f"cannot build genjax's oneDNN kernels ({first.strip()}): install g++ and oneDNN 2.x "
          f"(apt-get install g++ libdnnl-dev) or use conv_backend 'xla'")
    os.replace(tmp_out, out)  # atomic: concurrent builders leave one whole library
  return out


def _load() -> ctypes.CDLL:
  if _state["library"] is None:
    if jax.default_backend() != "cpu":
      raise errors.KernelError(f"conv backend 'onednn' runs on CPU only; this process's JAX "
                               f"backend is {jax.default_backend()!r}: use conv_backend 'xla'")
    lib = ctypes.cdll.LoadLibrary(str(build()))
    for kind, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(f"genjax_onednn_conv_{kind}",
                                  jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    _state["library"] = lib
  return _state["library"]


def _call(kind: str, shape, first, second, strides, padding, transposed: bool):
  """One custom call; ``shape`` is the global result shape. On a batch mesh each device runs
  it on its shard of the batch (both inputs batched for the kernel gradient, which is then
  summed over the mesh)."""
  (pt, pb), (pl, pr) = padding

  def call(a, b):
    local = shape if kind == "bwd_weights" else (a.shape[0], *shape[1:])
    return jax.ffi.ffi_call(f"genjax_onednn_conv_{kind}", jax.ShapeDtypeStruct(local, a.dtype),
                            vmap_method="sequential")(
        a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]), pt=np.int64(pt),
        pb=np.int64(pb), pl=np.int64(pl), pr=np.int64(pr), transposed=bool(transposed))

  mesh = _state["mesh"]
  if mesh is None or first.shape[0] % mesh.size:  # unshardable batches run whole
    return call(first, second)
  (axis,) = mesh.axis_names
  if kind == "bwd_weights":
    return jax.shard_map(lambda a, b: jax.lax.psum(call(a, b), axis), mesh=mesh,
                         in_specs=(P(axis), P(axis)), out_specs=P(), check_vma=False)(
        first, second)
  return jax.shard_map(call, mesh=mesh, in_specs=(P(axis), P()), out_specs=P(axis),
                       check_vma=False)(first, second)


def _out_size(size: int, k: int, s: int, lo: int, hi: int) -> int:
  return (size + lo + hi - k) // s + 1


# A convolution C from src (B, H, W, I) to dst (B, OH, OW, O), kernel given as (kh, kw, A, B_):
# HWIO when not transposed, (kh, kw, O, I) when transposed. The three primitives are C, its
# input-gradient and its kernel-gradient; conv and conv_transpose below are C and C's
# input-gradient, each differentiated by the other two.

def _fwd(src, kernel, strides, padding, transposed):
  kh, kw = kernel.shape[:2]
  o = kernel.shape[2] if transposed else kernel.shape[3]
  b, h, w, _ = src.shape
  shape = (b, _out_size(h, kh, strides[0], *padding[0]), _out_size(w, kw, strides[1], *padding[1]),
           o)
  return _call("fwd", shape, src, kernel, strides, padding, transposed)


def _bwd_data(dst, kernel, src_hw, strides, padding, transposed):
  i = kernel.shape[3] if transposed else kernel.shape[2]
  return _call("bwd_data", (dst.shape[0], *src_hw, i), dst, kernel, strides, padding, transposed)


def _bwd_weights(src, dst, kernel_shape, strides, padding, transposed):
  return _call("bwd_weights", kernel_shape, src, dst, strides, padding, transposed)


def _conv(x, kernel, strides, padding):
  return _fwd(x, kernel, strides, padding, False)


def _conv_vjp_fwd(x, kernel, strides, padding):
  return _fwd(x, kernel, strides, padding, False), (x, kernel)


def _conv_vjp_bwd(strides, padding, res, g):
  x, kernel = res
  return (_bwd_data(g, kernel, x.shape[1:3], strides, padding, False),
          _bwd_weights(x, g, kernel.shape, strides, padding, False))


_conv = jax.custom_vjp(_conv, nondiff_argnums=(2, 3))
_conv.defvjp(_conv_vjp_fwd, _conv_vjp_bwd)


def _conv_t(x, kernel, out_hw, strides, padding):
  return _bwd_data(x, kernel, out_hw, strides, padding, True)


_conv_t = jax.custom_vjp(_conv_t, nondiff_argnums=(2, 3, 4))


def _conv_t_vjp_fwd(x, kernel, out_hw, strides, padding):
  return _bwd_data(x, kernel, out_hw, strides, padding, True), (x, kernel)


def _conv_t_vjp_bwd(out_hw, strides, padding, res, g):
  x, kernel = res
  return (_fwd(g, kernel, strides, padding, True),
          _bwd_weights(g, x, kernel.shape, strides, padding, True))


_conv_t.defvjp(_conv_t_vjp_fwd, _conv_t_vjp_bwd)


def _check(x, kernel):
  if x.dtype != kernel.dtype or x.dtype.name not in ("float32", "bfloat16"):
    raise TypeError(f"onednn conv: x and kernel must both be float32 or bfloat16, got "
                    f"{x.dtype} and {kernel.dtype}")
  if x.ndim != 4 or kernel.ndim != 4 or x.shape[3] != kernel.shape[2]:
    raise ValueError(f"onednn conv: x (B, H, W, C) and kernel (kh, kw, C, out) must agree, got "
                     f"{x.shape} and {kernel.shape}")
  _load()


def onednn_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, padding, ('NHWC', 'HWIO', 'NHWC'))`` by
  oneDNN, differentiable in ``x`` and ``kernel``."""
  _check(x, kernel)
  padding = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _conv(x, kernel, tuple(int(s) for s in strides), padding)


def onednn_conv_transpose(x: jax.Array, kernel: jax.Array, stride: tuple[int, int],
                          padding: tuple[int, int], output_padding: tuple[int, int]) -> jax.Array:
  """PyTorch's ``ConvTranspose2d`` (kernel (kh, kw, in, out), integer padding; see
  :func:`genjax.models.layers.conv_transpose`) by oneDNN: the input-gradient of the conv from
  its output space back to its input space, padded (padding, padding - output_padding)."""
  _check(x, kernel)
  kh, kw = kernel.shape[:2]
  (sy, sx), (py, px), (opy, opx) = stride, padding, output_padding
  if opy > py or opx > px:
    raise ValueError(f"conv backend 'onednn' needs output_padding <= padding, got "
                     f"{output_padding} > {padding}; use conv backend 'xla'")
  h, w = x.shape[1:3]
  out_hw = ((h - 1) * sy - 2 * py + kh + opy, (w - 1) * sx - 2 * px + kw + opx)
  return _conv_t(x, kernel, out_hw, (int(sy), int(sx)),
                 ((int(py), int(py - opy)), (int(px), int(px - opx))))
