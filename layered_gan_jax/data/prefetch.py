"""Background prefetching and parallel decoding, and the iterator both streams build on.

Batches are assembled by a thread pool (PIL decodes and resizes outside the GIL) and computed
ahead by one background thread into a small bounded queue.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from typing import Callable

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import image_io


class _Failure:
  def __init__(self, exc: BaseException):
    self.exc = exc


_END = object()


class _Prefetcher:
  """Computes ``make_batch(k)`` for k = start, start + 1, ... (up to ``stop``) in a thread."""

  def __init__(self, make_batch: Callable[[int], dict], start: int, stop: int | None, depth: int):
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = threading.Thread(
      target=_Prefetcher._run,
      args=(make_batch, start, stop, self._queue, self._stop),
      daemon=True,
      name="data_prefetch",
    )
    self._thread.start()

  @staticmethod
  def _run(make_batch, start, stop, q, stop_event):
    k = start
    while not stop_event.is_set() and (stop is None or k < stop):
      try:
        item = make_batch(k)
      except BaseException as e:  # pylint: disable=broad-except
        item = _Failure(e)
      _put(q, item, stop_event)
      if isinstance(item, _Failure):
        return
      k += 1
    _put(q, _END, stop_event)

  def get(self):
    item = self._queue.get()
    if isinstance(item, _Failure):
      self.close()
      raise item.exc
    if item is _END:
      raise StopIteration
    return item

  def close(self):
    self._stop.set()


def _put(q, item, stop_event) -> None:
  """Puts ``item`` into the bounded queue ``q``, waiting for room unless stopped."""
  while not stop_event.is_set():
    try:
      q.put(item, timeout=0.1)
      return
    except queue.Full:
      continue


def num_workers(cfg) -> int:
  return int(data_config.get(cfg, "num_workers", min(16, os.cpu_count() or 1)))


def parallel_map(pool, workers: int, fn, items: list) -> list:
  """fn over items, in order, in a few chunks (one per worker) to keep task overhead low."""
  if workers <= 1 or len(items) <= 1:
    return [fn(x) for x in items]
  chunk = -(-len(items) // workers)
  parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
  results = pool.map(lambda part: [fn(x) for x in part], parts)
  return [y for part in results for y in part]


class DecodingBatches:
  """What the training and evaluation batch makers share: the decoding threads, the bad-file
  policy (``data.on_bad_file``) and the list of skipped files, guarded by ``_lock``."""

  def __init__(self, cfg, skipped=()):
    self.workers = num_workers(cfg)
    self.pool = concurrent.futures.ThreadPoolExecutor(
      max_workers=self.workers, thread_name_prefix="data_decode"
    )
    self.on_bad_file = image_io.check_on_bad_file(data_config.get(cfg, "on_bad_file", "skip"))
    self.skipped_files = list(skipped)  # Left out when the sources were listed.
    self._lock = threading.Lock()


class BatchIterator:
  """User-facing iterator over ``maker.make(k)``: prefetching, clean shutdown.

  The prefetch thread only references ``maker`` (never this wrapper), so dropping the wrapper
  garbage-collects it, which stops the thread.
  """

  def __init__(self, cfg, maker, start: int, stop: int | None):
    self._maker = maker
    self._next = start
    self._prefetcher = _Prefetcher(
      maker.make, start, stop, int(data_config.get(cfg, "prefetch", 2))
    )

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._prefetcher is None:
      raise StopIteration
    try:
      batch = self._prefetcher.get()
    except StopIteration:
      self.close()
      raise
    self._next += 1
    return batch

  @property
  def skipped_files(self) -> list[str]:
    """Names of the bad files left out so far (scan time and decode time)."""
    return list(self._maker.skipped_files)

  def close(self) -> None:
    """Stops the background threads (also done when the iterator is garbage collected)."""
    if self._prefetcher is not None:
      self._prefetcher.close()
      self._prefetcher = None
    self._maker.pool.shutdown(wait=False, cancel_futures=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
