"""Data parallelism, owned by the launcher: the same step runs on one device, on a mesh or under pmap.

- ``mesh`` (default): ``jax.jit`` with ``NamedSharding``; the global batch is sharded over the
  ``data`` axis of a 1-D mesh of all devices (all processes), state is replicated. XLA's SPMD
  partitioner inserts the gradient all-reduce, and BatchNorm statistics are global automatically.
- ``pmap``: ``jax.pmap`` over the local devices with an explicit ``pmean`` (``axis_name='batch'``,
  passed to models so that BatchNorm reduces over it).

Either way the semantics are those of single-device training on the global batch: losses are
means over the global batch and per-example noise is a slice of one global sample
(:func:`batch_random`), so results do not depend on the device count.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable

from absl import logging
import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import errors
from genjax.errors import ConfigError

STRATEGIES = ("mesh", "pmap")
PMAP_AXIS = "batch"
MESH_AXIS = "data"
Array = jax.Array


def pmean(tree: Any, axis_name: str | None) -> Any:
  """Mean over the pmap axis; identity outside pmap (jit/mesh reduces implicitly)."""
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def batch_random(sampler: Callable[..., jax.Array], key: jax.Array, shape: tuple[int, ...],
                 axis_name: str | None = None, **kwargs) -> jax.Array:
  """``sampler(key, shape)`` for this shard's part of a global batch.

  Under pmap every shard draws the global sample (leading dim times the axis size) and keeps its
  own slice, so the noise each example gets is the same as in single-device training on the
  global batch. Under jit the global array is drawn once and partitioned by XLA.
  """
  if axis_name is None:
    return sampler(key, shape, **kwargs)
  n, i = jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)
  full = sampler(key, (shape[0] * n, *shape[1:]), **kwargs)
  return jax.lax.dynamic_slice_in_dim(full, i * shape[0], shape[0])


class Strategy:
  """Places state and batches on devices and compiles ``step(state, batch) -> (state, metrics)``."""

  name: str
  axis_name: str | None

  def __init__(self):
    self.num_devices = jax.device_count()
    self.num_local_devices = jax.local_device_count()
    self.process_index, self.process_count = jax.process_index(), jax.process_count()

  def check_batch(self, global_batch: int) -> None:
    if global_batch % self.num_devices:
      raise ConfigError(
          f"batch_size={global_batch} is not divisible by the {self.num_devices} devices; use a "
          f"multiple of {self.num_devices} (e.g. --config.batch_size="
          f"{max(1, round(global_batch / self.num_devices)) * self.num_devices})")

  def max_steps_in_flight(self, configured: int) -> int:
    """How many dispatched steps may be unfinished (0: no bound).

    ``configured`` < 0 chooses: 1 for several CPU processes, else no bound. XLA:CPU runs the
    per-device programs of queued steps on a small thread pool, and with gloo collectives across
    processes a long queue can starve a device's program of the thread it needs to reach the
    collective its peers wait in (seen as a hang after ~50 queued steps, 2 processes x 2 devices
    on 2 cores). Elsewhere the queue is what keeps the devices busy.
    """
    if configured >= 0:
      return configured
    return 1 if self.process_count > 1 and jax.default_backend() == "cpu" else 0

  def put_state(self, state: Any) -> Any:
    raise NotImplementedError

  def get_state(self, state: Any) -> Any:
    """The state as one replicated copy (what checkpoints and samplers see)."""
    raise NotImplementedError

  @property
  def data_mesh(self) -> jax.sharding.Mesh | None:
    """The mesh over which a traced step's activations are batch-sharded, if several devices
    share one jitted program (what custom calls must be mapped over; ``genjax.kernels``)."""
    return None

  def state_sharding(self) -> jax.sharding.Sharding:
    """Sharding of one un-replicated copy of the state, for restoring checkpoints."""
    return NamedSharding(self.mesh, P())

  def put_batch(self, batch: dict[str, np.ndarray]) -> Any:
    raise NotImplementedError

  def compile(self, step: Callable, *, frozen: bool = False) -> Callable:
    """The step, jitted or pmapped, its state donated. With ``frozen`` it takes a third argument,
    the frozen networks' weights (``Method.attach_frozen``), placed like the state with
    :meth:`put_state` and not donated."""
    raise NotImplementedError

  def fetch(self, tree: Any) -> Any:
    """Host copy of replicated values (metrics)."""
    return jax.device_get(self.get_state(tree))


class MeshStrategy(Strategy):
  name, axis_name = "mesh", None

  def __init__(self):
    super().__init__()
    self.mesh = jax.make_mesh((self.num_devices,), (MESH_AXIS,),
                              axis_types=(jax.sharding.AxisType.Auto,))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(MESH_AXIS))

  @property
  def data_mesh(self):
    return self.mesh if self.num_devices > 1 else None

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    return state

  def put_batch(self, batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

  def compile(self, step, *, frozen=False):
    replicated_frozen = (self.replicated,) if frozen else ()
    return jax.jit(step, in_shardings=(self.replicated, self.batch_sharding, *replicated_frozen),
                   out_shardings=(self.replicated, self.replicated), donate_argnums=0)


class PmapStrategy(Strategy):
  name, axis_name = "pmap", PMAP_AXIS

  def __init__(self):
    super().__init__()
    self.mesh = jax.sharding.Mesh(np.array(jax.devices()), (PMAP_AXIS,))
    self.stacked = NamedSharding(self.mesh, P(PMAP_AXIS))  # one copy per device, stacked
    self.replicated = NamedSharding(self.mesh, P())

  def put_state(self, state):
    """Replicated arrays (as init and restore make them) -> pmap's stacked per-device copies."""
    def stack(x):
      x = jax.device_put(x, self.replicated)  # no-op for what init/restore give
      return jax.make_array_from_single_device_arrays(
          (self.num_devices, *x.shape), self.stacked,
          [shard.data[None] for shard in x.addressable_shards])
    return jax.tree.map(stack, state)

  def get_state(self, state):
    """Stacked per-device copies -> one replicated array (no copy across devices or hosts)."""
    def unstack(x):
      return jax.make_array_from_single_device_arrays(
          x.shape[1:], self.replicated, [shard.data[0] for shard in x.addressable_shards])
    return jax.tree.map(unstack, state)

  def put_batch(self, batch):
    def put(x):
      x = x.reshape(self.num_local_devices, x.shape[0] // self.num_local_devices, *x.shape[1:])
      return jax.make_array_from_process_local_data(self.stacked, x)
    return jax.tree.map(put, batch)

  def compile(self, step, *, frozen=False):
    del frozen  # every argument is mapped over the devices' stacked copies
    return jax.pmap(step, axis_name=PMAP_AXIS, donate_argnums=0)


def initialize_distributed(*, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           auto_detect: bool = False, heartbeat_timeout_s: int = 60) -> None:
  """Joins the multi-controller runtime (``jax.distributed``) before any device is touched.

  With explicit arguments all three must be given; with ``auto_detect`` JAX reads them from the
  cluster (SLURM, Open MPI, TPU pod slices, Kubernetes where supported). With neither, this is a
  single process and nothing happens. CPU processes exchange collectives over gloo. If a process
  dies, the others fail within about ``heartbeat_timeout_s`` instead of waiting forever.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if all(v is None for v in explicit) and not auto_detect:
    return
  if not auto_detect and any(v is None for v in explicit):
    raise ConfigError("multi-process training needs all of --coordinator_address, "
                      "--num_processes and --process_id (or --distributed to auto-detect them)")
  if num_processes is not None and not 0 <= (process_id or 0) < num_processes:
    raise ConfigError(f"--process_id={process_id} must be in [0, --num_processes="
                      f"{num_processes})")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
  except (RuntimeError, ValueError) as e:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    if all(v is None for v in explicit):
      raise ConfigError(f"--distributed found no cluster to join (SLURM, Open MPI, TPU pod, "
                        f"Kubernetes): {first}; give --coordinator_address, --num_processes "
                        f"and --process_id instead") from None
    raise ConfigError(f"could not join the distributed runtime at {coordinator_address} as "
                      f"process {process_id} of {num_processes}: {first}") from None


def barrier(name: str, timeout_s: int = 3600, *, report_after_s: float = 60) -> None:
  """Waits until every process has reached barrier ``name`` (each name once per run); nothing
  with one process. It is the coordination service's barrier, not a collective: it waits as
  long as ``timeout_s`` (some of gloo's collectives give up after 30 s) and fails when a process
  dies. A process alive but stuck never arrives, and nothing fails for an hour: a wait longer
  than ``report_after_s`` is logged, and again each time it has doubled."""
  if jax.process_count() == 1:
    return
  arrived = threading.Event()

  def report():
    waited, then = 0.0, report_after_s
    while not arrived.wait(then - waited):
      waited, then = then, 2 * then
      logging.warning("waited %.0fs at barrier %s for the other processes (one that never "
                      "arrives is stuck: kill -USR1 <its pid> prints where)", waited, name)
  threading.Thread(target=report, name=f"genjax-barrier-report-{name}", daemon=True).start()
  try:
    coordination_client().wait_at_barrier(name, timeout_s * 1000)
  finally:
    arrived.set()


def leave_together(timeout_s: float, *, grace_s: float = 1.0) -> None:
  """Called by a process of a multi-process run that stops with an error, before it exits.

  Process 0 hosts the coordination service, and a process whose service vanishes aborts (SIGABRT
  and a C++ stack instead of its one-line error) even while it is closing down after the same
  error, as a CI run's process 1 did. So process 0 leaves last: every other process posts that
  it leaves and exits at once (a synchronous save's failure reaches process 0 as that exit);
  process 0 waits until each has posted, then ``grace_s`` for their exits. It waits at most
  ``timeout_s`` (``--distributed_timeout``), as long as JAX gives a process that stopped
  responding: one still training, or dead, is not waited for longer. (A process that outlives
  another's exit by more than ``timeout_s`` is still stopped by JAX as if that one had died.)
  Nothing happens with one process, or once the service is gone."""
  client = coordination_client() if jax.process_count() > 1 else None
  if client is None:
    return
  try:
    if jax.process_index() != 0:
      client.key_value_set(f"genjax/leaving/{jax.process_index()}", "1")
      return
    deadline = time.monotonic() + timeout_s
    for i in range(1, jax.process_count()):
      client.blocking_key_value_get(f"genjax/leaving/{i}",
                                    max(int(1000 * (deadline - time.monotonic())), 1))
  except jax.errors.JaxRuntimeError:  # the deadline passed, or the service is gone: leave now
    return
  time.sleep(grace_s)


def coordination_client():
  """jax.distributed's client to the coordination service (which Orbax's barriers use too)."""
  return jax._src.distributed.global_state.client  # pylint: disable=protected-access


def make_strategy(name: str) -> Strategy:
  errors.check_choice("parallel strategy", name, STRATEGIES, ConfigError)
  return MeshStrategy() if name == "mesh" else PmapStrategy()


# --- batched, device-parallel application ------------------------------------------------------

class BatchedApply:
  """``fn(tree, x)`` over a host batch, in chunks split over devices, ``tree`` replicated.

  Chunks hold ``batch_size`` examples (rounded up to a multiple of the device count; fewer for a
  call with fewer examples), the last one padded, so a stream of calls compiles once per input
  shape. ``preprocess(x)`` (optional) runs as its own jitted function first, so that inputs of
  many sizes do not recompile ``fn``. Instances given the same hashable ``key`` (standing for
  the same ``fn`` and ``preprocess``; a network's graph definition, which holds its conv
  backend, names it) and devices share their compiled functions.
  """

  _compiled: dict[Hashable, Any] = {}

  def __init__(self, fn: Callable[[Any, Array], Any], tree: Any, *, batch_size: int = 64,
               devices: list[jax.Device] | None = None,
               preprocess: Callable[[Array], Array] | None = None, key: Hashable = None):
    devices = list(devices or jax.local_devices())
    self.num_devices = len(devices)
    mesh = jax.sharding.Mesh(np.array(devices), (MESH_AXIS,))
    self.replicated = NamedSharding(mesh, P())
    self.sharded = NamedSharding(mesh, P(MESH_AXIS))
    self.batch_size = -(-max(1, batch_size) // self.num_devices) * self.num_devices
    self.tree = jax.device_put(tree, self.replicated)
    cache_key = None if key is None else (key, tuple(d.id for d in devices))
    if cache_key is None or cache_key not in self._compiled:
      jitted = (jax.jit(fn, in_shardings=(self.replicated, self.sharded),
                        out_shardings=self.sharded),
                jax.jit(preprocess, in_shardings=self.sharded, out_shardings=self.sharded)
                if preprocess else None)
      if cache_key is None:
        self.fn, self.preprocess = jitted
        return
      self._compiled[cache_key] = jitted
    self.fn, self.preprocess = self._compiled[cache_key]

  def __call__(self, x: np.ndarray) -> Any:
    x = np.asarray(x)
    n = x.shape[0]
    if n == 0:
      raise ConfigError("no examples to compute features of")
    chunk = min(self.batch_size, -(-n // self.num_devices) * self.num_devices)
    outs = []
    for start in range(0, n, chunk):  # dispatch everything, then fetch
      part = x[start:start + chunk]
      if part.shape[0] < chunk:
        part = np.concatenate([part, np.zeros((chunk - part.shape[0], *x.shape[1:]), x.dtype)])
      part = jax.device_put(part, self.sharded)
      if self.preprocess is not None:
        part = self.preprocess(part)
      outs.append(self.fn(self.tree, part))
    outs = jax.device_get(outs)
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outs)
