"""Deterministic, resumable, per-process batch iteration over in-memory arrays.

Shuffling scheme: epoch ``e`` visits the examples in the order
``np.random.default_rng([seed, e]).permutation(N)``; global batch ``b`` of that epoch is
``perm[b * G:(b + 1) * G]`` (the last ``N % G`` examples of each epoch are dropped), and process
``p`` of ``P`` takes the contiguous slice ``[p * G / P:(p + 1) * G / P]`` of it. Global batch
number ``position`` is therefore a pure function of ``(seed, position)``, which makes resuming
exact: save ``position``, construct a new iterator with it.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from genjax.errors import DataError

T = TypeVar("T")
Arrays = dict[str, np.ndarray]


class BatchIterator:
  """Infinite iterator over this process's slices of shuffled global batches.

  Batches are gathered with ``np.take`` and keep their dtypes (images stay uint8); float
  preprocessing belongs on device.

  Attributes:
    position: Number of global batches produced so far; checkpoint it to resume exactly.
    steps_per_epoch: Global batches per epoch, ``N // global_batch``.
    global_batch: Examples per global batch, over all processes.
    local_batch: Examples per batch on this process.
  """

  def __init__(self, arrays: Arrays, global_batch: int, *, seed: int, position: int = 0,
               process_index: int = 0, process_count: int = 1):
    if not arrays:
      raise DataError("BatchIterator needs at least one array")
    sizes = {k: len(v) for k, v in arrays.items()}
    n = next(iter(sizes.values()))
    if any(s != n for s in sizes.values()):
      raise DataError(f"arrays have different lengths: {sizes}")
    if process_count < 1 or not 0 <= process_index < process_count:
      raise DataError(f"invalid process_index={process_index} for process_count={process_count}")
    if global_batch < 1 or global_batch % process_count:
      raise DataError(f"global batch size {global_batch} must be a positive multiple of the "
                      f"process count {process_count}")
    if global_batch > n:
      raise DataError(f"global batch size {global_batch} exceeds the dataset size {n}")
    if position < 0:
      raise DataError(f"position must be >= 0, got {position}")
    self._arrays = dict(arrays)
    self._n = n
    self._seed = seed
    self.global_batch = global_batch
    self.local_batch = global_batch // process_count
    self._offset = process_index * self.local_batch
    self.steps_per_epoch = n // global_batch
    self.position = position
    self._epoch = -1
    self._perm = np.empty(0, np.int64)

  @property
  def epoch(self) -> int:
    """Epoch of the next batch."""
    return self.position // self.steps_per_epoch

  def permutation(self, epoch: int) -> np.ndarray:
    """The example order of ``epoch``."""
    return np.random.default_rng([self._seed, epoch]).permutation(self._n)

  def indices(self, position: int) -> np.ndarray:
    """Example indices of this process's slice of global batch ``position``."""
    epoch, step = divmod(position, self.steps_per_epoch)
    if epoch != self._epoch:
      self._perm, self._epoch = self.permutation(epoch), epoch
    start = step * self.global_batch + self._offset
    return self._perm[start:start + self.local_batch]

  def __next__(self) -> Arrays:
    idx = self.indices(self.position)
    self.position += 1
    return {k: np.take(v, idx, axis=0) for k, v in self._arrays.items()}

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
