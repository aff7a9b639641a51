"""Deterministic, resumable, per-process batch iteration over in-memory arrays.

Shuffling scheme: the examples' keys form shuffle groups, keys of one group being rows of the
same examples (``image`` with its ``label``; a paired dataset's ``A`` with its ``B``). An
unpaired dataset has one group per domain (``A``, ``label_A`` and ``B``, ``label_B``), each
with its own length and order. Epoch ``e`` of group ``g`` visits its examples in the order
``np.random.default_rng([seed, e]).permutation(N_g)`` for the first group and
``default_rng([seed, e, g])`` for the others; global batch ``b`` of that epoch is
``perm[b * G:(b + 1) * G]`` (the last ``N_g % G`` examples of each epoch are dropped), and
process ``p`` of ``P`` takes the contiguous slice ``[p * G / P:(p + 1) * G / P]`` of it.
Every group yields one batch per step, so global batch number ``position`` is a pure function
of ``(seed, position)`` in every group, which makes resuming exact: save ``position``,
construct a new iterator with it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np

from genjax.errors import DataError

T = TypeVar("T")
Arrays = dict[str, np.ndarray]


class _Group:
  """The order of one shuffle group: keys that are rows of the same examples."""

  def __init__(self, keys: tuple[str, ...], n: int, seed: list[int]):
    self.keys, self.n, self.seed = keys, n, seed
    self.epoch, self.perm = -1, np.empty(0, np.int64)

  def permutation(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([*self.seed[:1], epoch, *self.seed[1:]]).permutation(self.n)


class BatchIterator:
  """Infinite iterator over this process's slices of shuffled global batches.

  Batches are gathered with ``np.take`` and keep their dtypes (images stay uint8); float
  preprocessing belongs on device.

  Args:
    arrays: the examples' named arrays; keys of one shuffle group have equal lengths.
    global_batch: examples per global batch (of every group), over all processes.
    groups: the shuffle groups, as tuples of keys (every key in exactly one); None: one group
      of all keys (aligned examples).

  Attributes:
    position: Number of global batches produced so far; checkpoint it to resume exactly.
    steps_per_epoch: Global batches per epoch of the first group, ``N // global_batch``.
    global_batch: Examples per global batch, over all processes.
    local_batch: Examples per batch on this process.
  """

  def __init__(self, arrays: Arrays, global_batch: int, *, seed: int, position: int = 0,
               process_index: int = 0, process_count: int = 1,
               groups: Sequence[Sequence[str]] | None = None):
    if not arrays:
      raise DataError("BatchIterator needs at least one array")
    groups = [tuple(arrays)] if groups is None else [tuple(g) for g in groups]
    listed = [k for g in groups for k in g]
    if sorted(listed) != sorted(arrays) or len(set(listed)) != len(listed):
      raise DataError(f"shuffle groups {groups} must hold every key of {sorted(arrays)} once")
    if process_count < 1 or not 0 <= process_index < process_count:
      raise DataError(f"invalid process_index={process_index} for process_count={process_count}")
    if global_batch < 1 or global_batch % process_count:
      raise DataError(f"global batch size {global_batch} must be a positive multiple of the "
                      f"process count {process_count}")
    if position < 0:
      raise DataError(f"position must be >= 0, got {position}")
    self._groups = []
    for g, keys in enumerate(groups):
      sizes = {k: len(arrays[k]) for k in keys}
      n = sizes[keys[0]]
      if any(s != n for s in sizes.values()):
        raise DataError(f"arrays have different lengths: {sizes}")
      if global_batch > n:
        raise DataError(f"global batch size {global_batch} exceeds the dataset size {n}"
                        + (f" (of {', '.join(keys)})" if len(groups) > 1 else ""))
      self._groups.append(_Group(keys, n, [seed] if g == 0 else [seed, g]))
    self._arrays = dict(arrays)
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self._offset = process_index * self.local_batch
    self.steps_per_epoch = self._groups[0].n // global_batch
    self.position = position

  @property
  def epoch(self) -> int:
    """Epoch of the next batch (of the first group)."""
    return self.position // self.steps_per_epoch

  def epochs(self, position: int) -> dict[str, int]:
    """Each shuffle group's epoch at global batch ``position`` (checkpoints record them)."""
    return {"+".join(g.keys): position // (g.n // self.global_batch) for g in self._groups}

  def permutation(self, epoch: int) -> np.ndarray:
    """The example order of ``epoch`` (of the first group)."""
    return self._groups[0].permutation(epoch)

  def _indices(self, group: _Group, position: int) -> np.ndarray:
    epoch, step = divmod(position, group.n // self.global_batch)
    if epoch != group.epoch:
      group.perm, group.epoch = group.permutation(epoch), epoch
    start = step * self.global_batch + self._offset
    return group.perm[start:start + self.local_batch]

  def indices(self, position: int) -> np.ndarray:
    """Example indices of this process's slice of global batch ``position`` (first group)."""
    return self._indices(self._groups[0], position)

  def __next__(self) -> Arrays:
    batch = {}
    for group in self._groups:
      idx = self._indices(group, self.position)
      batch.update({k: np.take(self._arrays[k], idx, axis=0) for k in group.keys})
    self.position += 1
    return {k: batch[k] for k in self._arrays}

  def __iter__(self) -> BatchIterator:
    return self


class _Failure:
  """Wraps an exception raised in the prefetch thread."""

  def __init__(self, error: BaseException):
    self.error = error


_DONE = object()


def prefetch(iterator: Iterator[Any], put: Callable[[Any], T] | None = None,
             size: int = 2) -> Iterator[T]:
  """Yields ``put(next(iterator))``, computed ahead in a daemon thread.

  Up to ``size`` results wait in a queue (one more may be in flight). Exceptions raised by the
  iterator or ``put`` are re-raised in the consumer; the stream ends when ``iterator`` does.
  Closing the generator (or dropping it) stops the thread.

  Note that the thread advances ``iterator`` ahead of the consumer, so e.g.
  ``BatchIterator.position`` counts prefetched batches: checkpoint the number of batches
  consumed instead.

  Args:
    iterator: Source of items.
    put: Applied to every item in the thread, e.g. a host-to-device transfer (default: none).
    size: Queue capacity, >= 1.
  """
  if size < 1:
    raise ValueError(f"prefetch size must be >= 1, got {size}")
  put = put or (lambda x: x)
  buffer: queue.Queue[Any] = queue.Queue(maxsize=size)
  stop = threading.Event()

  def offer(item: Any) -> bool:
    while not stop.is_set():
      try:
        buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def work() -> None:
    try:
      while not stop.is_set():
        try:
          item = put(next(iterator))
        except StopIteration:
          offer(_DONE)
          return
        if not offer(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      offer(_Failure(e))

  def consume() -> Iterator[T]:
    thread = threading.Thread(target=work, name="genjax-prefetch", daemon=True)
    thread.start()
    try:
      while True:
        item = buffer.get()
        if item is _DONE:
          return
        if isinstance(item, _Failure):
          raise item.error
        yield item
    finally:
      stop.set()
      thread.join(timeout=1.0)

  return consume()
