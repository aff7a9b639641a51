"""Networks used without being optimised: loaded from another genjax run, from a genjax export or
from the reference repositories' PyTorch weights, and never copied into the checkpoint of
whatever uses them.

A source is named by one string (a command-line flag or a config key):

* a genjax run's workdir, ``RUN`` (its newest checkpoint) or ``RUN@STEP``, optionally with
  ``#ROLE`` for a network other than the run's sampling network (e.g. ``runs/cyclegan#G_B``);
  the EMA weights are taken where the run kept them;
* a genjax export, ``NAME.npz`` (:func:`export`);
* a PyTorch ``.pth`` state_dict in the reference's layout (``latest_net_G.pth``), read without
  PyTorch into a network the caller builds (:mod:`genjax.torch_weights`); :func:`export_torch`
  writes a translation run's networks so.

``python -m genjax.cli.export`` writes both kinds of export from the command line.

Every failure (a missing run or file, another architecture, a role the run lacks) is a one-line
:class:`~genjax.errors.CheckpointError`, raised before anything runs.

A training config names the frozen networks its method uses in ``config.frozen`` (one key per
slot of the method's ``FROZEN``); :func:`for_config` loads and checks them at start-up, and puts
their convolutions on the method's kernels (``method.conv_backend``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

from genjax import errors
from genjax import runs
from genjax import torch_weights
from genjax.errors import CheckpointError
from genjax.errors import ConfigError
from genjax.models import layers

# the storage dtypes of an export's floating-point arrays (what np.load reads back as floats)
EXPORT_DTYPES = ("float32", "float16", "float64")


@dataclasses.dataclass
class Network:
  """A frozen network: ``module`` in inference mode (call it; use ``nnx.split`` for jit), and the
  genjax method and config it came from (None for a PyTorch file)."""
  module: nnx.Module
  source: str
  method: Any = None
  config: Any = None
  role: str | None = None  # the genjax method's name for it (None for a PyTorch file)


def parse(spec: str) -> tuple[str, int | None, str | None]:
  """``"RUN@STEP#ROLE"`` -> ``(RUN, STEP or None, ROLE or None)``."""
  match = re.fullmatch(r"(.+?)(?:@(\d+))?(?:#(\w+))?", spec)
  if not match:
    raise CheckpointError(f"cannot read the network source {spec!r}: give RUN[@STEP][#ROLE], "
                          f"NAME.npz or NAME.pth")
  path, step, role = match.groups()
  return path, None if step is None else int(step), role


def _role_module(method, state, role: str, source: str, *, train: bool) -> nnx.Module:
  if role not in state.params:
    raise CheckpointError(f"{source} has no network {role!r}; it has {', '.join(state.params)}")
  return method.net(role, state.ema.get(role, state.params[role]), state.buffers[role],
                    train=train)


def from_run(spec: str, *, train: bool = False) -> Network:
  """A network of a genjax run (``RUN[@STEP][#ROLE]``); ``train`` keeps it in training mode
  (BatchNorm batch statistics)."""
  path, step, role = parse(spec)
  method, state, config = runs.restore_run(path, step)
  role = role or method.SAMPLE_NET
  return Network(_role_module(method, state, role, spec, train=train), spec, method, config,
                 role)


def export(workdir: str, out: str, *, role: str | None = None, dtype: str = "float32") -> dict:
  """Writes network ``role`` of a run (its sampling network by default; EMA weights where kept,
  with its buffers) and the run's config to one ``.npz``: enough to rebuild it with
  :func:`from_export`, without the other networks or the optimizer states."""
  if dtype not in EXPORT_DTYPES:
    raise ConfigError(f"cannot store an export as {dtype!r}; choose one of "
                      f"{', '.join(EXPORT_DTYPES)}")
  if os.path.isdir(out):
    raise ConfigError(f"{out} is a folder: give the .npz file to write")
  method, state, config = runs.restore_run(workdir)
  role = role or method.SAMPLE_NET
  if role not in state.params:
    raise CheckpointError(f"{workdir} has no network {role!r}; it has {', '.join(state.params)}")

  def flat(prefix, tree):
    return {prefix + jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  arrays = {**flat("params", state.ema.get(role, state.params[role])),
            **flat("buffers", state.buffers[role])}
  arrays = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
            for k, v in arrays.items()}
  tmp = out + ".tmp.npz"
  try:
    np.savez_compressed(tmp, config=np.array(config.to_json()), role=np.array(role),
                        step=np.array(int(state.step)), **arrays)
    os.replace(tmp, out)
  except OSError as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise ConfigError(f"cannot write {out}: {e.strerror}") from None
  return {"out": out, "role": role, "step": int(state.step)}


def from_export(path: str, *, train: bool = False) -> Network:
  """The network written by :func:`export` (as float32)."""
  from genjax import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    with np.load(path) as f:
      stored = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path} as a genjax export: {e}") from None
  config = config_lib.from_json(str(stored["config"]))
  method = runs.build_method(config)
  role = str(stored["role"]) if "role" in stored else method.SAMPLE_NET
  abstract = jax.eval_shape(method.init, jax.random.PRNGKey(0))

  def fill(prefix, tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    values = []
    for p, x in leaves:
      key = prefix + jax.tree_util.keystr(p)
      if key not in stored or stored[key].shape != x.shape:
        raise CheckpointError(f"{path} does not fit its own config: {key} is "
                              f"{stored[key].shape if key in stored else 'missing'} there but "
                              f"{x.shape} here")
      values.append(stored[key].astype(x.dtype))
    return jax.tree.unflatten(jax.tree.structure(tree), values)
  module = method.net(role, fill("params", abstract.params[role]),
                      fill("buffers", abstract.buffers[role]), train=train)
  return Network(module, path, method, config, role)


def export_torch(workdir: str, out: str) -> dict:
  """Writes every network of a Pix2Pix/CycleGAN run (EMA weights where kept) into the folder
  ``out`` as the reference's ``latest_net_<ROLE>.pth``, which its ``test.py``, ``torch.load`` and
  :func:`from_torch` read."""
  method, state, config = runs.restore_run(workdir)
  nets = {role: method.net(role, state.ema.get(role, state.params[role]), state.buffers[role])
          for role in state.params}
  if not all(hasattr(net, "torch_layers") for net in nets.values()):
    raise CheckpointError(f"{workdir} holds a {config.model.name!r} run: only Pix2Pix and "
                          f"CycleGAN networks have the reference's PyTorch layout")
  errors.make_folder(out, "the .pth files' folder")
  files = {}
  for role, net in nets.items():
    files[role] = os.path.join(out, f"latest_net_{role}.pth")
    torch_weights.write_state_dict(files[role], torch_weights.to_torch(net))
  return {"files": files, "step": int(state.step)}


def from_torch(path: str, build: Callable[[], nnx.Module], *, train: bool = False) -> Network:
  """A reference ``.pth`` loaded into the network ``build()`` makes (built abstractly: nothing is
  initialised first)."""
  if not os.path.isfile(path):
    raise CheckpointError(f"no weights file {path}")
  net = torch_weights.from_torch(nnx.eval_shape(build), path)
  from genjax.methods.base import inference  # pylint: disable=g-import-not-at-top
  return Network(net if train else inference(net), path)


def load(spec: str, *, build: Callable[[], nnx.Module] | None = None,
         train: bool = False) -> Network:
  """The network named by ``spec`` (see the module docstring). ``build`` makes the architecture
  a ``.pth`` file is loaded into."""
  if spec.endswith(".pth") or spec.endswith(".pt"):
    if build is None:
      raise CheckpointError(f"{spec} is a PyTorch state_dict: name its architecture too")
    return from_torch(spec, build, train=train)
  if spec.endswith(".npz"):
    return from_export(spec, train=train)
  return from_run(spec, train=train)


def for_config(config, method) -> dict[str, Network]:
  """The frozen networks ``config.frozen`` names, ``{slot: Network}``, in inference mode, each
  checked against the slot ``method.FROZEN`` declares (slot names and required slots are
  checked by ``genjax.config.validate``).

  Raises:
    CheckpointError: One line naming the slot: a missing or unreadable source, or a network of
      another family than the slot takes.
  """
  networks = {}
  for slot, spec in config.get("frozen", {}).items():
    if not spec:
      continue
    kind = method.FROZEN[slot]
    if spec.endswith((".pth", ".pt")) and kind.build is None:
      raise CheckpointError(f"config.frozen.{slot}={spec} is a PyTorch file, and this slot "
                            f"takes {kind.what} from a genjax run or .npz export only")
    try:
      network = load(spec, build=kind.build and functools.partial(kind.build, method))
    except CheckpointError as e:
      raise CheckpointError(f"config.frozen.{slot}: {e}") from None
    family = network.config.model.name if network.config is not None else None
    if kind.families and family not in kind.families:
      raise CheckpointError(f"config.frozen.{slot}={spec} is a {family!r} network, and this "
                            f"slot takes {kind.what}: a {' or '.join(map(repr, kind.families))} "
                            f"run or export")
    networks[slot] = dataclasses.replace(
        network, module=layers.on_conv_backend(network.module, method.conv_backend))
  return networks


def warm_start_source(config) -> Network | None:
  """The network ``config.init.from_run`` names (``RUN[@STEP][#ROLE]`` or ``NAME.npz``), loaded
  and checked at start-up like a frozen slot's; None where it names none."""
  spec = config.init.from_run
  if not spec:
    return None
  if spec.endswith((".pth", ".pt")):
    raise CheckpointError(f"config.init.from_run={spec} is a PyTorch file: give a genjax run "
                          f"RUN[@STEP][#ROLE] or a genjax.cli.export .npz")
  try:
    return load(spec)
  except CheckpointError as e:
    raise CheckpointError(f"config.init.from_run: {e}") from None


def warm_start(state, method, network: Network):
  """``state`` with the parameters and buffers of ``network`` copied into this run's network
  of the same role (its sampling network where it has no such role), path by path: every
  path the two share takes the source's value (Deep SVDD's ``encoder/...`` from its
  pre-training autoencoder), the others keep their initial values. The role's optimizer state
  and EMA restart from the copied weights.

  Raises:
    CheckpointError: One line: the networks share no parameter, or a shared one has another
      shape (another architecture).
  """
  role = parse(network.source)[2] or network.method.SAMPLE_NET
  target = role if role in state.params else method.SAMPLE_NET
  _, params, buffers = nnx.split(network.module, nnx.Param, ...)

  def copy(into, source, what: str, required: bool):
    given = {jax.tree_util.keystr(p): x
             for p, x in jax.tree_util.tree_flatten_with_path(source)[0]}
    out, shared = [], 0
    for path, x in jax.tree_util.tree_flatten_with_path(into)[0]:
      key = jax.tree_util.keystr(path)
      if key in given:
        if np.shape(given[key]) != np.shape(x):
          raise CheckpointError(
              f"config.init.from_run={network.source} does not fit network {target!r}: {what}"
              f"{key} is {list(np.shape(given[key]))} there but {list(np.shape(x))} here "
              f"(another architecture)")
        x, shared = np.asarray(given[key], np.asarray(x).dtype), shared + 1
      out.append(x)
    if required and not shared:
      raise CheckpointError(
          f"config.init.from_run={network.source} ({network.config.model.name!r}) shares no "
          f"parameter with network {target!r} of {method.config.model.name!r}: another "
          f"architecture")
    return jax.tree.unflatten(jax.tree.structure(into), out)

  new_params = copy(state.params[target], params, "parameter ", True)
  new_buffers = copy(state.buffers[target], buffers, "buffer ", False)
  ema = dict(state.ema)
  if target in ema:
    ema[target] = jax.tree.map(np.copy, new_params)
  return state.replace(params={**state.params, target: new_params},
                       buffers={**state.buffers, target: new_buffers},
                       opt_state={**state.opt_state, target: method.tx[target].init(new_params)},
                       ema=ema)
