"""The one training loop: ``train_and_evaluate(config, workdir)`` runs every model family.

Per step the host only enqueues work: the batch was gathered and transferred ahead of time by a
prefetch thread, the jitted step takes donated state, and metrics stay on device until the next
log, sample or checkpoint boundary, which are the only host syncs. The loop resumes from the
newest checkpoint in ``workdir``, refuses checkpoints of another model, stops on a non-finite
loss keeping the last good checkpoint, and on SIGTERM/SIGINT saves a checkpoint and returns
(several processes first agree on the step to stop after, see :class:`_StopRequest`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from genjax import checkpoint
from genjax import config as config_lib
from genjax import data
from genjax import evaluation
from genjax import frozen
from genjax import kernels
from genjax import parallel
from genjax import profiling
from genjax import reporting
from genjax import runs
from genjax import errors
from genjax.errors import NonFiniteError
from genjax.errors import StepError


@dataclasses.dataclass
class Result:
  """What a run ended with."""
  step: int  # updates done
  state: Any  # final TrainState (one replicated copy, on device)
  metrics: dict[str, float]  # means over the last logging interval
  signal: int | None = None  # the signal that stopped the run early (any process's), if any
  sample_paths: list[str] = dataclasses.field(default_factory=list)


class _StopRequest:
  """Turns SIGTERM/SIGINT into a stop after a step, agreed by all processes (main thread only).

  A single process stops right after the step during which the signal came. Several processes
  must stop at the same step: one that left the loop alone would enter Orbax's collective save
  while the others ran the next step's collectives (a hang). So they act on signals only at the
  steps where every process waits for its devices anyway, the first step (its compile is
  reported) and log and checkpoint boundaries: there each contributes its flag to an all-gather,
  and all stop if any got a signal. No other step gains a host sync; a stop takes effect at the
  next ``log_every`` or ``checkpoint_every`` step. A second signal raises KeyboardInterrupt at
  once, without saving (with several processes the others then stop with the "another task
  died" error).
  """

  def __init__(self, process_count: int):
    self.process_count = process_count
    self.received: int | None = None  # by this process
    self.signum: int | None = None  # what the run stops by, once acted upon
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.received is not None:  # a second signal: stop now, without saving
      raise KeyboardInterrupt
    self.received = signum
    logging.warning("received %s: finishing %s, saving a checkpoint, then exiting",
                    signal.Signals(signum).name, "this step" if self.process_count == 1 else
                    "the steps up to the next log or checkpoint step with the other processes")

  def after(self, step: int, synced: Any = None) -> bool:
    """Whether to stop after ``step``. ``synced`` is the step's output where every process
    waits for its devices at this step anyway, else None; several processes agree only there
    (each must call this at the same steps: they share the config)."""
    if self.process_count == 1:
      self.signum = self.received  # read once: a signal may land at any point after this
    elif synced is not None:
      # The all-gather would queue behind the step's own collectives: let those finish first.
      jax.block_until_ready(synced)
      received = multihost_utils.process_allgather(np.int32(self.received or 0))
      senders = np.flatnonzero(received)
      if senders.size:
        self.signum = int(received[senders[0]])
        logging.warning("process %s received %s: all %d processes stop after step %d",
                        ", ".join(map(str, senders)), signal.Signals(self.signum).name,
                        self.process_count, step)
    return self.signum is not None

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _enable_compilation_cache(path: str | None) -> None:
  if path and jax.config.jax_compilation_cache_dir != path:
    errors.make_folder(path, "config.compilation_cache_dir", fix=": give a writable folder, or "
                       "'' to compile afresh in each process")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_and_evaluate(config, workdir: str) -> Result:
  """Trains ``config``'s model in ``workdir``, resuming from its newest checkpoint."""
  config_lib.validate(config)
  _enable_compilation_cache(config_lib.compilation_cache_dir(config))
  strategy = parallel.make_strategy(config.parallel)
  strategy.check_batch(config.batch_size)
  ds = config.dataset
  arrays = data.load_config(ds)
  # resolved once, before anything is written; the networks carry it (genjax.kernels)
  conv_backend = kernels.resolve(config.conv_backend, mesh=strategy.data_mesh,
                                 dtype=config.dtype)
  method = runs.build_method(config, strategy.axis_name, conv_backend)
  # loaded and checked before anything is written; passed to each step as an argument
  frozen_weights = method.attach_frozen(frozen.for_config(config, method))
  warm = frozen.warm_start_source(config)  # checked now; applied to a fresh run only

  errors.make_folder(workdir, "--workdir")
  with contextlib.ExitStack() as cleanup:
    ckpt = cleanup.enter_context(checkpoint.Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints,
        asynchronous=config.async_checkpoints))
    logging.info("conv kernels: %s", kernels.describe(conv_backend, config.dtype))
    try:
      return _train(config, workdir, strategy, arrays, method, frozen_weights, warm, ckpt,
                    cleanup)
    except jax.errors.JaxRuntimeError as e:  # a kernel's or a collective's error: one line
      where = ckpt.settle()  # saves already under way are of earlier, good states
      peers = (f"; with {jax.process_count()} processes this is usually another process that "
               f"died or was stopped: see its log" if jax.process_count() > 1 else "")
      raise StepError(f"a compiled step failed ({errors.first_line(e)}){peers}; stopped, "
                      f"{where}") from None


def _train(config, workdir, strategy, arrays, method, frozen_weights, warm, ckpt,
           cleanup) -> Result:
  """The loop proper; ``cleanup`` closes what it opens, whatever way it exits."""
  frozen_sources = {slot: network.source for slot, network in method.frozen.items()}
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(method.init, rng)
  kernels.take_failure()  # one from before this run is not this run's
  sharding = strategy.state_sharding()
  newest = ckpt.restore_newest(abstract, sharding=sharding, model=config.model.name,
                               skip_corrupt=config.resume_skip_corrupt)
  if newest is None:  # one compiled init is much faster than op-by-op random initialisers
    start, state, position = 0, jax.jit(method.init, out_shardings=sharding)(rng), 0
    if warm is not None:
      state = frozen.warm_start(state, method, warm)
      logging.info("initialised from %s", warm.source)
    state = method.prepare(state, arrays)
  else:
    start, state, meta = newest
    position = meta["data_position"]
    if meta.get("global_batch") != config.batch_size:  # keep the number of examples seen
      position = meta["examples_seen"] // config.batch_size
    logging.info("resumed from %s at step %d", ckpt.directory, start)
    before, now = meta.get("kernels", {}), kernels.record(method.conv_backend, config.dtype)
    used = lambda r: " ".join(filter(None, (r.get("conv_kernels"), r.get("onednn"))))
    if before and used(before) != used(now):  # another backend, oneDNN version or ISA
      logging.warning("the run so far used conv kernels %r, this process uses %r: the same "
                      "function, rounded differently", used(before), used(now))
    if meta.get("frozen", {}) != frozen_sources:
      logging.warning("the run so far used the frozen networks %r, this process uses %r",
                      meta.get("frozen", {}), frozen_sources)
  state = strategy.put_state(state)

  report = reporting.Reporter(workdir, num_steps=config.num_steps, batch_size=config.batch_size,
                              value_range=config.dataset.value_range,
                              process_index=strategy.process_index)
  cleanup.callback(report.close)
  if start == 0:
    report.text(0, "config", "```\n" + str(config) + "\n```")
  sig = checkpoint.signature(abstract)

  def save(step: int, state) -> None:
    one = strategy.get_state(state)
    if not bool(_all_finite(one)):
      raise NonFiniteError(f"the parameters became non-finite by step {step}; stopped without "
                           f"saving them, {ckpt.settle()}")
    meta = {"model": config.model.name, "step": step, "data_position": position + step - start,
            "global_batch": config.batch_size,
            "examples_seen": (position + step - start) * config.batch_size,
            "data_epochs": iterator.epochs(position + step - start),
            "signature": sig, "config": config.to_json(),
            "kernels": kernels.record(method.conv_backend, config.dtype),
            "frozen": frozen_sources}
    ckpt.save(step, one, meta)

  evaluator = evaluation.Evaluator(config, method) if config.eval.every else None
  eval_key = jax.random.fold_in(rng, 0x7FFFFFFE)

  def check_kernels(step: int) -> None:
    """After a wait for the device: a kernel that failed meanwhile stops the run (its results
    were NaN, so nothing it touched is saved)."""
    failure = kernels.take_failure()
    if failure:
      raise StepError(f"a kernel failed at or before step {step} ({failure}); stopped, "
                      f"{ckpt.settle()}")

  def evaluate(step: int, state) -> None:
    results = evaluator(strategy.get_state(state), eval_key)
    check_kernels(step)
    evaluation.record(workdir, step, results, report.tb)

  # replicated grids: every process can fetch them, however the networks shard activations
  sample_fn = jax.jit(method.sample_grids, out_shardings=strategy.state_sharding())
  sample_examples = {k: v[:config.num_samples] for k, v in arrays.items()}
  sample_key = jax.random.fold_in(rng, 0x7FFFFFFF)

  def write_samples(step: int, state) -> list[str]:
    grids = jax.device_get(sample_fn(strategy.get_state(state), sample_examples, sample_key,
                                     *map(strategy.get_state, frozen_args)))
    check_kernels(step)
    return report.images(step, grids)

  iterator = data.BatchIterator(arrays, config.batch_size, seed=config.seed, position=position,
                                groups=arrays.groups,
                                process_index=strategy.process_index,
                                process_count=strategy.process_count)
  step_fn = strategy.compile(method.step, frozen=bool(frozen_weights))
  # the frozen networks' weights, placed like the state (replicated), as the step's last argument
  frozen_args = (strategy.put_state(frozen_weights),) if frozen_weights else ()
  pending: list[tuple[int, dict]] = []
  last_metrics: dict[str, float] = {}
  sample_paths: list[str] = []

  def flush(step: int, since: float, steps: int) -> None:
    """Fetches pending metrics (a host sync), checks them and logs their means and speed."""
    nonlocal last_metrics
    host = strategy.fetch([m for _, m in pending])
    elapsed = time.perf_counter() - since
    check_kernels(step)
    for (s, _), values in zip(pending, host):
      bad = {k: float(v) for k, v in values.items() if not np.isfinite(v)}
      if bad:
        raise NonFiniteError(
            f"non-finite loss at step {s} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
            f"stopped, {ckpt.settle()}: lower the learning rate or check the data")
    last_metrics = {k: float(np.mean([v[k] for v in host])) for k in host[0]}
    lrs = {role: float(fn(step)) for role, fn in method.schedules.items()}
    report.scalars(step, last_metrics, steps_per_sec=steps / max(elapsed, 1e-9),
                   learning_rates=lrs)
    pending.clear()

  batches = data.prefetch(iterator, strategy.put_batch, size=2)
  cleanup.callback(batches.close)
  t_first = time.perf_counter()
  # compiles here, once
  if (config.profile.dump_hlo or strategy.process_count > 1) and start < config.num_steps:
    first = next(batches)
    if config.profile.dump_hlo:
      step_fn = profiling.dump_hlo(step_fn, (state, first, *frozen_args),
                                   os.path.join(workdir, "hlo"))
    else:
      step_fn.lower(state, first, *frozen_args).compile()  # jit/pmap keep the executable
    batches_iter = itertools.chain([first], batches)
    # gloo gives a collective 30 s to find all its processes: processes that compile at
    # different speeds (cold and warm caches, busy hosts) start the first step together
    parallel.barrier("genjax_first_step")
  else:
    batches_iter = batches
  tracer = profiling.StepTracer(config.profile, workdir, strategy.process_index,
                                strategy.process_count)
  tracer.skipped(start + 1)
  cleanup.callback(tracer.close)
  step = start
  with _StopRequest(strategy.process_count) as stop:
    if start >= config.num_steps:
      logging.info("already at step %d of %d: nothing to train", start, config.num_steps)
    t_interval, n_interval = time.perf_counter(), 0
    max_in_flight = strategy.max_steps_in_flight(config.max_steps_in_flight)
    for step in range(start + 1, config.num_steps + 1):
      if max_in_flight and len(pending) >= max_in_flight:
        jax.block_until_ready(pending[-max_in_flight][1])  # bound the dispatch queue
      tracer.before(step)
      with jax.profiler.StepTraceAnnotation("train_step", step_num=step):
        state, metrics = step_fn(state, next(batches_iter), *frozen_args)
      tracer.after(step, (state, metrics))
      pending.append((step, metrics))
      n_interval += 1
      boundary = (step % config.log_every == 0 or step % config.checkpoint_every == 0 or
                  step == config.num_steps)
      # the steps that wait for the devices anyway: the first (one sync to report compile
      # time, then steady-state timing) and those that log or save
      stopping = stop.after(step, metrics if step == start + 1 or boundary else None)
      if step == start + 1:
        jax.block_until_ready(metrics)
        logging.info("compiled and ran the first step in %.1fs", time.perf_counter() - t_first)
        t_interval, n_interval = time.perf_counter(), 0
      last = step == config.num_steps or stopping
      if boundary or stopping:
        flush(step, t_interval, max(n_interval, 1))
        t_interval, n_interval = time.perf_counter(), 0
      # Save first: a stop signal's grace period may not cover an evaluation (a minute or more
      # with Inception), and an evaluation that fails must not lose the step.
      if step % config.checkpoint_every == 0 or last:
        save(step, state)
      if step % config.sample_every == 0 or last:
        sample_paths = write_samples(step, state)
      if (evaluator and (step % config.eval.every == 0 or last) and
          (not stopping or config.eval.on_stop)):
        evaluate(step, state)
      if stopping:
        break
    if pending:
      flush(step, t_interval, max(n_interval, 1))
    ckpt.wait()
  if stop.signum is not None:
    logging.warning("stopped by %s at step %d; checkpoint saved in %s",
                    signal.Signals(stop.signum).name, step, ckpt.directory)
  state = strategy.get_state(state)
  # Every process prints the digest of its own copy: equal digests mean consistent replicas.
  logging.info("final state at step %d: sha256 %s", step, checkpoint.fingerprint(state))
  return Result(step=step, state=state, metrics=last_metrics, signal=stop.signum,
                sample_paths=sample_paths)
