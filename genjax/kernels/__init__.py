"""Which kernels genjax's convolution layers run: XLA's, or oneDNN's through XLA's FFI (CPU).

``conv_backend`` is a process setting, like an XLA flag: ``set_conv_backend(name)`` (the trainer
does it from ``config.conv_backend``) before the step is traced, or the
:func:`use_conv_backend` context for a block of code. Until set, layers use XLA's kernels.

- ``'xla'``: ``lax`` convolutions; transposed convolutions by the phase decomposition (or
  ``lax.conv_transpose``) that the layer's ``impl`` names.
- ``'onednn'``: every conv and transposed conv of :mod:`genjax.models.layers` is a custom call
  into oneDNN 2.x primitives (``onednn_conv.cc``: forward, backward-data, backward-weights),
  differentiated (to any order, in reverse mode) by those primitives too (a forward conv with
  at most 16 output pixels and a kernel of 2^21 or more weights, or with a 1x1 output, runs as
  im2col + oneDNN's matmul, which is faster there). On the 2-core AVX-512 CPU here they take
  about half XLA:CPU's time (see benchmarks/results/README.md). CPU only,
  float32 and bfloat16. Under the ``mesh`` strategy each custom call runs on every device's
  shard of the batch (``shard_map``); under ``pmap`` per device. The library is compiled on
  first use into ``~/.cache/genjax/kernels`` (``GENJAX_KERNEL_DIR``; needs ``g++`` and
  ``libdnnl-dev``).
- ``'auto'`` (the config's default): ``'onednn'`` where it builds and loads, else ``'xla'``.

Both backends compute the same function with the same parameters; they differ in rounding only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
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
  start-up; ``'auto'`` is ``'onednn'`` on a CPU backend where the library builds and loads (and
  logs why not where it does not), else ``'xla'``. ``mesh``: a one-axis mesh over which the
  batch of activations is sharded (the ``mesh`` strategy's, several devices): each custom call
  then runs on every device's shard (``shard_map``), with the kernel gradient summed over it.
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
    cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp",
           "-Wno-return-type", "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(tmp_out),
           "-ldnnl"]
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
      proc = None
    if proc is None or proc.returncode:
      first = "compiler not found" if proc is None else next(
          (line for line in proc.stderr.splitlines() if "error" in line),
          proc.stderr.strip()[-200:])
      raise errors.KernelError(
          f"cannot build genjax's oneDNN kernels ({first.strip()}): install g++ and oneDNN 2.x "
          f"(apt-get install g++ libdnnl-dev) or use --config.conv_backend=xla")
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
    except OSError as e:  # e.g. libdnnl.so.2 removed since the build
      raise errors.KernelError(f"cannot load genjax's oneDNN kernels ({e}): reinstall oneDNN 2.x "
                               f"(apt-get install libdnnl-dev) or use --config.conv_backend=xla")
    for kind, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(f"genjax_onednn_conv_{kind}",
                                  jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
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


def _call(kind: str, shape, first, second, geo: Geometry):
  """One custom call; ``shape`` is the global result shape. On a batch mesh each device runs
  it on its shard of the batch (both inputs batched for the kernel gradient, which is then
  summed over the mesh)."""
  (pt, pb), (pl, pr) = geo.padding

  def call(a, b):
    local = shape if kind == "bwd_weights" else (a.shape[0], *shape[1:])
    return jax.ffi.ffi_call(f"genjax_onednn_conv_{kind}", jax.ShapeDtypeStruct(local, a.dtype),
                            vmap_method="sequential")(
        a, b, sh=np.int64(geo.strides[0]), sw=np.int64(geo.strides[1]), pt=np.int64(pt),
        pb=np.int64(pb), pl=np.int64(pl), pr=np.int64(pr), transposed=geo.transposed)

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


# C's three primitives are bilinear, and each one's VJP is made of the other two, so every
# order of reverse-mode differentiation (e.g. a gradient penalty's) stays on oneDNN.

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _fwd(src, kernel, geo: Geometry):
  """dst = C(src; kernel)."""
  (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = geo.kernel_hw, geo.strides, geo.padding
  o = kernel.shape[2] if geo.transposed else kernel.shape[3]
  shape = (src.shape[0], (src.shape[1] + pt + pb - kh) // sh + 1,
           (src.shape[2] + pl + pr - kw) // sw + 1, o)
  return _call("fwd", shape, src, kernel, geo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _bwd_data(dst, kernel, geo: Geometry):
  """src-space = C^T(dst; kernel), the input-gradient of C."""
  i = kernel.shape[3] if geo.transposed else kernel.shape[2]
  return _call("bwd_data", (dst.shape[0], *geo.src_hw, i), dst, kernel, geo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _bwd_weights(src, dst, geo: Geometry):
  """kernel-space: the kernel-gradient of <C(src; kernel), dst>."""
  i, o = src.shape[3], dst.shape[3]
  return _call("bwd_weights", (*geo.kernel_hw, *((o, i) if geo.transposed else (i, o))), src,
               dst, geo)


def _fwd_bwd(geo, res, g):
  src, kernel = res
  return _bwd_data(g, kernel, geo), _bwd_weights(src, g, geo)


def _bwd_data_bwd(geo, res, g):
  dst, kernel = res
  return _fwd(g, kernel, geo), _bwd_weights(g, dst, geo)


def _bwd_weights_bwd(geo, res, g):
  src, dst = res
  return _bwd_data(dst, g, geo), _fwd(src, g, geo)


def _saving_inputs(prim):
  return lambda a, b, geo: (prim(a, b, geo), (a, b))


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
                padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """``lax.conv_general_dilated(x, kernel, strides, padding, ('NHWC', 'HWIO', 'NHWC'))`` by
  oneDNN, differentiable in ``x`` and ``kernel``."""
  _check(x, kernel)
  geo = Geometry(tuple(x.shape[1:3]), tuple(kernel.shape[:2]), tuple(int(s) for s in strides),
                 tuple(tuple(int(p) for p in pair) for pair in padding), False)
  return _fwd(x, kernel, geo)


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
                          padding: tuple[int, int], output_padding: tuple[int, int]) -> jax.Array:
  """PyTorch's ``ConvTranspose2d`` (kernel (kh, kw, in, out), integer padding; see
  :func:`genjax.models.layers.conv_transpose`) by oneDNN: the input-gradient of the conv from
  its output space back to its input space, padded (padding, padding - output_padding).

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
  y = _bwd_data(x, kernel, geo)
  return jnp.pad(y, ((0, 0), (0, ey), (0, ex), (0, 0))) if ey or ex else y
