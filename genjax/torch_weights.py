"""PyTorch ``state_dict`` files without PyTorch, and genjax networks under a PyTorch reference's
names.

- :func:`read_state_dict` reads a ``.pth`` (``torch.save`` of a state_dict: the zip archive of
  PyTorch >= 1.6 or the legacy stream) with a restricted unpickler: tensors and ordered dicts only.
- :func:`write_state_dict` writes the zip archive that ``torch.load`` reads (``weights_only``
  included): ``archive/data.pkl`` (pickle protocol 2, storages as persistent ids),
  ``archive/data/<n>`` (64-byte aligned, as PyTorch aligns them), ``archive/byteorder`` and
  ``archive/version``; atomically (a temporary file, then ``os.replace``).
- :func:`to_torch` / :func:`from_torch` map a network's parameters and BatchNorm statistics to and
  from the reference's exact ``state_dict`` (:func:`state_dict_shapes`: its keys and shapes, also
  of an abstract network), for networks whose ``torch_layers()`` yields
  ``(module name, layer)`` in the reference's state_dict order (the pix2pix/CycleGAN networks of
  :mod:`genjax.models.translation_nets`). Layouts: ``Conv2d.weight`` (out, in, kh, kw) is the
  kernel (kh, kw, in, out); ``ConvTranspose2d.weight`` (in, out, kh, kw) likewise; BatchNorm's
  ``weight, bias, running_mean, running_var, num_batches_tracked`` are ``scale, bias, mean, var,
  num_batches_tracked``.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import uuid
import zipfile
from typing import Any, Iterator, Mapping

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from genjax import errors
from genjax.errors import CheckpointError
from genjax.models import layers

# --- reading -----------------------------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """What ``torch.FloatStorage`` and friends unpickle to."""
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
  key: str
  dtype: np.dtype
  offset: int = 0  # elements into the root storage (legacy storage views)


@dataclasses.dataclass(frozen=True)
class _TensorRef:
  storage: _StorageRef
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> _TensorRef:
  del unused  # requires_grad, backward hooks, metadata
  return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _TorchUnpickler(pickle.Unpickler):
  """Unpickles tensors and the containers of a state_dict; refuses every other global."""

  _GLOBALS = {
      ("collections", "OrderedDict"): collections.OrderedDict,
      ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  }

  def find_class(self, module: str, name: str):
    if (module, name) in self._GLOBALS:
      return self._GLOBALS[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
    raise pickle.UnpicklingError(f"it holds {module}.{name}, which is not part of a tensor "
                                 f"state_dict")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
    view = pid[5] if len(pid) > 5 else None  # legacy: (view key, offset, size) or None
    return _StorageRef(str(pid[2]), pid[1].dtype, int(view[1]) if view else 0)


def _storage_refs(obj, refs: dict[str, _StorageRef]) -> dict[str, _StorageRef]:
  if isinstance(obj, _TensorRef):
    refs.setdefault(obj.storage.key, obj.storage)
  elif isinstance(obj, dict):
    for v in obj.values():
      _storage_refs(v, refs)
  elif isinstance(obj, (list, tuple)):
    for v in obj:
      _storage_refs(v, refs)
  return refs


def _materialize(obj, storages: dict[str, np.ndarray]):
  """Replaces every tensor reference by a numpy copy of its strided view of the storage."""
  if isinstance(obj, _TensorRef):
    base = storages[obj.storage.key][obj.storage.offset:]
    if any(s == 0 for s in obj.size):
      return np.zeros(obj.size, base.dtype)
    extent = obj.offset + sum((n - 1) * s for n, s in zip(obj.size, obj.stride)) + 1
    if obj.offset < 0 or extent > base.shape[0] or any(s < 0 for s in obj.stride):
      raise ValueError(f"a tensor of shape {obj.size} lies outside its storage")
    view = np.lib.stride_tricks.as_strided(
        base[obj.offset:], obj.size, tuple(s * base.itemsize for s in obj.stride))
    return np.array(view, base.dtype.newbyteorder("="))  # a native-order copy
  if isinstance(obj, dict):
    return type(obj)((k, _materialize(v, storages)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v, storages) for v in obj)
  return obj


def _read_zip(path: str):
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
    if pkl is None:
      raise ValueError("a zip archive without data.pkl")
    prefix = pkl[:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big":
      order = ">"
    obj = _TorchUnpickler(io.BytesIO(zf.read(pkl))).load()
    storages = {key: np.frombuffer(zf.read(f"{prefix}data/{key}"), ref.dtype.newbyteorder(order))
                for key, ref in _storage_refs(obj, {}).items()}
  return _materialize(obj, storages)


def _read_legacy(path: str):
  with open(path, "rb") as f:
    f = io.BytesIO(f.read())
  if _TorchUnpickler(f).load() != _LEGACY_MAGIC:
    raise ValueError("not a PyTorch file (bad magic number)")
  if _TorchUnpickler(f).load() != _LEGACY_PROTOCOL:
    raise ValueError("unsupported legacy PyTorch protocol version")
  sys_info = _TorchUnpickler(f).load()
  order = "<" if sys_info.get("little_endian", True) else ">"
  obj = _TorchUnpickler(f).load()
  keys = _TorchUnpickler(f).load()
  refs = _storage_refs(obj, {})
  storages = {}
  for key in keys:  # each storage: int64 element count, then the raw elements
    dtype = refs[str(key)].dtype.newbyteorder(order) if str(key) in refs else np.dtype(np.uint8)
    count = int(np.frombuffer(f.read(8), "<i8")[0])
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
      raise ValueError("the file is truncated")
    storages[str(key)] = np.frombuffer(data, dtype)
  return _materialize(obj, storages)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A PyTorch ``state_dict`` file as ``{key: numpy array}``; PyTorch is not needed.

  Reads the zip format (``torch.save`` since 1.6) and the legacy stream format with a
  restricted unpickler (tensors and ordered dicts only). If that fails and PyTorch is
  importable, ``torch.load(weights_only=True)`` gets a second try.

  Raises:
    CheckpointError: The file is missing, unreadable or not a state_dict of tensors.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"cannot read {path}: no such file")
  try:
    obj = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  except Exception as e:  # pylint: disable=broad-except
    obj = _torch_load(path, e)
  if not (isinstance(obj, Mapping) and obj
          and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())):
    raise CheckpointError(f"{path} is not a PyTorch state_dict of tensors")
  return dict(obj)


def _torch_load(path: str, error: Exception):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointError(f"cannot read {path} as a PyTorch state_dict ({errors.first_line(error)}) "
                          f"and PyTorch is not installed to try it") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            for k, v in obj.items()}
  except Exception:  # pylint: disable=broad-except
    raise CheckpointError(f"cannot read {path} as a PyTorch state_dict: "
                          f"{errors.first_line(error)}") from None


# --- writing -----------------------------------------------------------------------------------

_STORAGE_NAMES = {np.dtype(dtype): name for name, dtype in _STORAGE_DTYPES.items()}
_ALIGNMENT = 64  # bytes; PyTorch aligns every storage record so that it can be memory-mapped
_ARCHIVE = "archive"


class _PickleWriter:
  """The few pickle opcodes (protocol 2, PyTorch's) that a state_dict needs. Globals are written
  by name, so PyTorch's functions and storage types need not be importable here."""

  def __init__(self):
    self.parts = [pickle.PROTO, b"\x02"]

  def op(self, *codes: bytes):
    self.parts.extend(codes)

  def text(self, s: str):
    b = s.encode()
    self.op(pickle.BINUNICODE, struct.pack("<I", len(b)), b)

  def integer(self, i: int):
    if -2 ** 31 <= i < 2 ** 31:
      self.op(pickle.BININT, struct.pack("<i", i))
    else:
      b = i.to_bytes(i.bit_length() // 8 + 1, "little", signed=True)
      self.op(pickle.LONG1, bytes([len(b)]), b)

  def integers(self, values):
    self.op(pickle.MARK)
    for v in values:
      self.integer(int(v))
    self.op(pickle.TUPLE)

  def global_(self, module: str, name: str):
    self.op(pickle.GLOBAL, f"{module}\n{name}\n".encode())

  def getvalue(self) -> bytes:
    return b"".join(self.parts + [pickle.STOP])


def _pickle_state_dict(state: Mapping[str, np.ndarray]) -> bytes:
  """``data.pkl`` of ``torch.save(OrderedDict(state))``, tensor ``i`` a contiguous view of the
  storage named ``str(i)``: ``OrderedDict({key: torch._utils._rebuild_tensor_v2(storage, 0,
  shape, strides, False, OrderedDict())})`` with each storage a persistent id
  ``('storage', torch.<Type>Storage, name, 'cpu', numel)``."""
  w = _PickleWriter()
  w.global_("collections", "OrderedDict")
  w.op(pickle.EMPTY_TUPLE, pickle.REDUCE, pickle.MARK)
  for i, (key, value) in enumerate(state.items()):
    w.text(key)
    w.global_("torch._utils", "_rebuild_tensor_v2")
    w.op(pickle.MARK, pickle.MARK)
    w.text("storage")
    w.global_("torch", _STORAGE_NAMES[value.dtype])
    w.text(str(i))
    w.text("cpu")
    w.integer(value.size)
    w.op(pickle.TUPLE, pickle.BINPERSID)
    w.integer(0)
    w.integers(value.shape)
    w.integers(np.prod(value.shape[d + 1:], dtype=np.int64) for d in range(value.ndim))
    w.op(pickle.NEWFALSE)
    w.global_("collections", "OrderedDict")
    w.op(pickle.EMPTY_TUPLE, pickle.REDUCE, pickle.TUPLE, pickle.REDUCE)
  w.op(pickle.SETITEMS)
  return w.getvalue()


def _write_record(zf: zipfile.ZipFile, name: str, data) -> None:
  """An uncompressed member whose data starts at a multiple of ``_ALIGNMENT`` bytes (padded by
  an extra field, as PyTorch's writer does)."""
  info = zipfile.ZipInfo(f"{_ARCHIVE}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
  header = 30 + len(info.filename.encode()) + 4  # local header, name, our extra field's header
  if len(data) * 1.05 > zipfile.ZIP64_LIMIT:
    header += 20  # zipfile's zip64 extra field
  pad = -(zf.fp.tell() + header) % _ALIGNMENT
  info.extra = b"FB" + struct.pack("<H", pad) + bytes(pad)
  zf.writestr(info, data)


def write_state_dict(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
  """Writes ``{key: array}`` as a PyTorch state_dict file that ``torch.load`` reads.

  Arrays keep their dtype (float32/64, float16, bfloat16, int8-64, uint8, bool); the file
  appears complete or not at all (a temporary file in the same directory, then ``os.replace``).
  """
  path = os.fspath(path)
  arrays = {}
  for key, value in state.items():
    value = np.asarray(value)
    if value.dtype.byteorder == ">":
      value = value.astype(value.dtype.newbyteorder("<"))
    if not isinstance(key, str) or value.dtype not in _STORAGE_NAMES:
      raise ValueError(f"cannot write {key!r} ({value.dtype}) as a PyTorch tensor")
    arrays[key] = value
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
  try:
    with open(tmp, "xb") as f:
      with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        _write_record(zf, "data.pkl", _pickle_state_dict(arrays))
        _write_record(zf, "byteorder", b"little")
        for i, value in enumerate(arrays.values()):
          _write_record(zf, f"data/{i}", np.ascontiguousarray(value).reshape(-1).view(np.uint8))
        _write_record(zf, "version", b"3\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


# --- networks under the reference's names --------------------------------------------------------

_CONV = (3, 2, 0, 1)  # kernel (kh, kw, in, out) -> Conv2d.weight (out, in, kh, kw)
_CONV_TRANSPOSE = (2, 3, 0, 1)  # -> ConvTranspose2d.weight (in, out, kh, kw)
_INSTANCE_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One state_dict tensor: its key, the variable holding it and the axis permutation from the
  variable's layout to PyTorch's (None: the same)."""
  key: str
  variable: nnx.Variable
  perm: tuple[int, ...] | None = None

  @property
  def torch_shape(self) -> tuple[int, ...]:
    shape = tuple(self.variable.shape)
    return shape if self.perm is None else tuple(shape[p] for p in self.perm)

  def to_torch(self) -> np.ndarray:
    value = np.asarray(self.variable.get_value())
    if np.issubdtype(value.dtype, np.integer):
      value = value.astype(np.int64)  # PyTorch's counters are int64
    return value if self.perm is None else np.ascontiguousarray(value.transpose(self.perm))

  def from_torch(self, value: np.ndarray) -> jnp.ndarray:
    value = value if self.perm is None else value.transpose(np.argsort(self.perm))
    return jnp.asarray(value.astype(self.variable.dtype))


def _layer_entries(name: str, layer: nnx.Module) -> list[_Entry]:
  if isinstance(layer, (layers.Conv, layers.ConvTranspose)):
    perm = _CONV_TRANSPOSE if isinstance(layer, layers.ConvTranspose) else _CONV
    entries = [_Entry(f"{name}.weight", layer.kernel, perm)]
    return entries + ([_Entry(f"{name}.bias", layer.bias)] if layer.bias is not None else [])
  if isinstance(layer, nnx.BatchNorm):
    pairs = [("weight", layer.scale), ("bias", layer.bias), ("running_mean", layer.mean),
             ("running_var", layer.var),
             ("num_batches_tracked", getattr(layer, "num_batches_tracked", None))]
    return [_Entry(f"{name}.{key}", var) for key, var in pairs if var is not None]
  if isinstance(layer, (layers.InstanceNorm, layers.Identity)):
    return []
  raise TypeError(f"{name}: no PyTorch layout for {type(layer).__name__}")


def _entries(net: nnx.Module) -> Iterator[_Entry]:
  for name, layer in net.torch_layers():
    yield from _layer_entries(name, layer)


def state_dict_shapes(net: nnx.Module) -> dict[str, tuple[int, ...]]:
  """The reference's state_dict keys and shapes for ``net`` (also for an abstract one, from
  ``nnx.eval_shape``), in its order."""
  return {e.key: e.torch_shape for e in _entries(net)}


def to_torch(net: nnx.Module) -> dict[str, np.ndarray]:
  """``net``'s parameters and BatchNorm statistics as the reference's state_dict, in its order
  and layouts (float32 tensors, int64 ``num_batches_tracked``)."""
  return {e.key: e.to_torch() for e in _entries(net)}


def from_torch(net: nnx.Module, state: Mapping[str, np.ndarray] | str | os.PathLike, *,
               source: str | None = None) -> nnx.Module:
  """Loads the reference's state_dict (a mapping, or a ``.pth`` path) into ``net``; returns it.

  ``net`` may be abstract (``nnx.eval_shape(lambda: define_G(...))``): it is then filled without
  being initialised first.

  Accepted as the reference's own loader accepts them: keys under a ``module.`` prefix (saved
  from ``DataParallel``), BatchNorm without ``num_batches_tracked`` (PyTorch < 0.4.1: set to 0)
  and running statistics of InstanceNorm layers (older PyTorch kept them; ignored).

  Raises:
    CheckpointError: One line naming ``source`` (the file's name by default), the network, and
      the first missing, misshapen or unexpected key with both shapes; ``net`` is unchanged.
  """
  if isinstance(state, (str, os.PathLike)):
    source = source or os.path.basename(os.fspath(state))
    state = read_state_dict(state)
  source = source or "the state_dict"
  if state and all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  prefix = f"{source} does not fit {getattr(net, 'name', type(net).__name__)}: "
  updates, expected = [], set()
  for entry in _entries(net):
    expected.add(entry.key)
    want = entry.torch_shape
    if entry.key not in state and entry.key.endswith(".num_batches_tracked"):
      updates.append((entry, np.zeros(want, np.int64)))
      continue
    if entry.key not in state:
      raise CheckpointError(f"{prefix}{entry.key} is missing there but {want} here")
    value = np.asarray(state[entry.key])
    if tuple(value.shape) != want:
      raise CheckpointError(f"{prefix}{entry.key} is {value.shape} there but {want} here")
    updates.append((entry, value))
  ignored = {f"{name}.{stat}" for name, layer in net.torch_layers()
             if isinstance(layer, layers.InstanceNorm) for stat in _INSTANCE_NORM_STATS}
  for key, value in state.items():
    if key not in expected and key not in ignored:
      raise CheckpointError(f"{prefix}{key} is {tuple(value.shape)} there but missing here")
  for entry, value in updates:
    entry.variable.set_value(entry.from_torch(value))
  return net
