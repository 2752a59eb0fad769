"""The training stream: :func:`train_iterator`, infinite, shuffled, randomly cropped batches.

Each global batch is a pure function of (seed, global batch size, batch index), whatever the
number of processes, so resumption is exact and needs no replay (docs/data.md); so is the mix
of several sources (``mixture``).
"""

from __future__ import annotations

import threading

import numpy as np
from absl import logging

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import mixture, prefetch, sources, synthetic, tfds_sources
from layered_gan_jax.data.transforms import (
  crop_offsets,
  crop_size,
  epoch_permutation,
  to_float,
  train_transform,
)
from layered_gan_jax.errors import DataError

# The synthetic training images, rendered and resized once, are kept in memory when the whole
# train split fits in this many bytes (20,000 images at 1.125 x 128 px: 1.24 GB).
SYNTHETIC_CACHE_BYTES = 2 << 30


class _SourceStream:
  """One source's own stream: its examples in a new permutation each epoch (from its seed), each
  cropped at an offset from (seed, epoch, example), a bad file replaced by the next loadable
  example. Position c of the stream is example ``permutation(epoch)[c % N]``, epoch c // N."""

  def __init__(self, source: sources.Source, seed: int, batches: prefetch.DecodingBatches):
    self.source = source
    self.seed = seed
    self._batches = batches  # The bad-file policy and the skipped files' list, shared.
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}
    self._bad_local: set[int] = set()

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._perms:
        if len(self._perms) > 4:
          self._perms.pop(min(self._perms))
        self._perms[epoch] = epoch_permutation(len(self.source), self.seed, epoch)
      return self._perms[epoch]

  def plan(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, source example) of the stream's ``positions``."""
    n = len(self.source)
    epochs, within = positions // n, positions % n
    local = np.empty_like(positions)
    for e in np.unique(epochs):
      sel = epochs == e
      local[sel] = self._permutation(int(e))[within[sel]]
    return epochs, local

  def crop_offsets(self, epochs: np.ndarray, local: np.ndarray, max_offset: int) -> np.ndarray:
    return crop_offsets(self.seed, epochs, self.source.global_indices[local], max_offset)

  def load(self, local: int) -> np.ndarray:
    """The image of ``local``; a bad file is replaced by the next loadable example (in index
    order, wrapping around): the same replacement on every process, whatever it saw before."""
    n = len(self.source)
    for step in range(n):
      i = (local + step) % n
      if i in self._bad_local:
        continue
      try:
        return self.source.load(i)
      except DataError as e:
        if self._batches.on_bad_file == "error":
          raise
        with self._lock:
          if i not in self._bad_local:
            self._bad_local.add(i)
            self._batches.skipped_files.append(self.source.name(i))
            logging.warning("Skipping bad training example (replaced by the next one): %s", e)
    raise DataError(
      f"Every training example ({n}) failed to load; see the "
      f"warnings above for the files and the reason."
    )


class _TrainBatches(prefetch.DecodingBatches):
  """This process's rows of global batch k of the training stream, as a pure function of k."""

  def __init__(
    self,
    cfg,
    data_sources: list[sources.Source],
    weights: list[float],
    *,
    resolution: int,
    batch_size: int,
    seed: int,
    process_index: int,
    process_count: int,
  ):
    super().__init__(cfg, [f for s in data_sources for f in s.skipped])
    self.resolution = resolution
    self.batch_size = batch_size
    self.process_index = process_index
    self.process_count = process_count
    self.global_batch_size = batch_size * process_count
    self.random_crop = bool(data_config.get(cfg, "random_crop", True))
    self.size = crop_size(
      resolution, float(data_config.get(cfg, "org_to_crop", data_config.DEFAULT_ORG_TO_CROP))
    )
    # One source: its stream is the training stream (seed unchanged). Several: each has its
    # own seed, and the mixture says which one each stream position draws from.
    seeds = (
      [seed]
      if len(data_sources) == 1
      else [mixture.source_seed(seed, j) for j in range(len(data_sources))]
    )
    self.streams = [_SourceStream(s, q, self) for s, q in zip(data_sources, seeds)]
    self.mixture = mixture.Mixture(weights, seed)

  def plan(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, epoch of that source, its example) of each of this process's rows of global
    batch k."""
    first = k * self.global_batch_size + self.process_index * self.batch_size
    positions = np.arange(first, first + self.batch_size, dtype=np.int64)  # In the stream.
    labels, ranks = self.mixture.locate(positions)
    epochs, local = np.empty_like(ranks), np.empty_like(ranks)
    for j in np.unique(labels):
      sel = labels == j
      epochs[sel], local[sel] = self.streams[j].plan(ranks[sel])
    return labels, epochs, local

  def indices(self, labels: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Each row's example index within its source."""
    out = np.empty(len(labels), np.int64)
    for j in np.unique(labels):
      sel = labels == j
      out[sel] = self.streams[j].source.global_indices[local[sel]]
    return out

  def offsets(self, labels, epochs, local) -> np.ndarray:
    """int64 [rows, 2] crop offsets of the rows, each from its source's seed."""
    out = np.empty((len(labels), 2), np.int64)
    for j in np.unique(labels):
      sel = labels == j
      out[sel] = self.streams[j].crop_offsets(epochs[sel], local[sel], self.size - self.resolution)
    return out

  def make(self, k: int) -> dict:
    labels, epochs, local = self.plan(k)
    if self.random_crop:
      offsets = self.offsets(labels, epochs, local)
    else:
      offsets = [None] * len(local)

    def one(r):
      image = self.streams[labels[r]].load(int(local[r]))
      return train_transform(image, self.resolution, self.size, offsets[r])

    images = prefetch.parallel_map(self.pool, self.workers, one, list(range(len(local))))
    return {"image": to_float(np.stack(images)), "source": labels}


class TrainIterator(prefetch.BatchIterator):
  """Infinite iterator of training batches; see :func:`train_iterator`.

  Attributes:
    batches_consumed: start_index + the number of batches returned so far (global batch index
      == this process's batch index): the value to store in a checkpoint and pass back as
      ``start_index`` to resume.
    examples_per_epoch: N, the training examples of one epoch (the same on every process; with
      several sources, of all of them together).
    global_batch_size: ``batch_size * process_count``.
    source_names: what logs call each source (``batch['source']`` indexes it).
    source_sizes: the training examples of each source.
    skipped_files: names of the files left out (bad files) by this process so far.
  """

  def __init__(self, cfg, maker: _TrainBatches, start_index: int, source_names: list[str]):
    self.source_sizes = [len(s.source) for s in maker.streams]
    self.examples_per_epoch = sum(self.source_sizes)
    self.global_batch_size = maker.global_batch_size
    self.source_names = list(source_names)
    super().__init__(cfg, maker, start_index, None)

  @property
  def batches_consumed(self) -> int:
    return self._next

  def batch_sources(self, k: int) -> np.ndarray:
    """int32 [batch_size]: the source of each of this process's rows of global batch k (what
    ``batch['source']`` holds); pure."""
    return self._maker.plan(k)[0]

  def batch_indices(self, k: int) -> np.ndarray:
    """Example indices (within each row's source) of this process's rows of global batch k
    (before any bad-file substitution); pure. Concatenated over processes 0..P-1 they are the
    indices of a one-process run's batch k with batch size ``global_batch_size``."""
    labels, _, local = self._maker.plan(k)
    return self._maker.indices(labels, local)

  def crop_offsets_of_batch(self, k: int) -> np.ndarray | None:
    """int64 [batch_size, 2] (y, x) crop offsets of this process's rows of global batch k
    (None without random crops)."""
    if not self._maker.random_crop:
      return None
    return self._maker.offsets(*self._maker.plan(k))


def _resolve_processes(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index={process_index} must be in [0, process_count={process_count})."
    )
  return int(process_index), int(process_count)


def clear_caches() -> None:
  """Frees the in-memory caches (rendered synthetic images, encoded tfds records)."""
  sources.clear_synthetic_cache()
  tfds_sources.clear_tfds_cache()


def train_iterator(
  cfg,
  *,
  resolution: int,
  batch_size: int,
  seed: int,
  start_index: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> TrainIterator:
  """Infinite iterator of ``{'image': float32 [batch_size, R, R, 3] in [-1, 1], 'source':
  int32 [batch_size]}`` ('source': which of ``iterator.source_names`` each image is from; 0
  with one source; for logs and tests, never for the model).

  ``batch_size`` (b) is this process's batch; the global batch is ``G = b * process_count``.
  The N examples (the first ``num_train_examples``) are visited in a new permutation each
  epoch, derived from ``(seed, epoch)`` only, the same on every process; the stream of
  examples is the concatenation of these permutations (a batch may straddle two epochs).
  Global batch k is stream positions ``[k G, (k + 1) G)``, and process p yields its rows
  ``[p b, (p + 1) b)``. Each example is cropped at an offset derived from
  ``(seed, epoch, example index)``. So global batch k is a pure function of
  ``(cfg, resolution, G, seed, k)``, whatever the process count: the batches k of processes
  0..P-1, concatenated in process order, equal batch k of a one-process iterator with
  ``batch_size=G``. Every process holds all N examples (for tfds: their encoded bytes, in
  memory; see docs/data.md).

  Several sources (``cfg.sources``, see ``data_config.data_sources``): each has a stream of
  its own as above, from a seed derived from ``(seed, source)``, and position t of the
  training stream takes the next position of the stream of the source that
  ``mixture.Mixture(weights, seed)`` assigns to t (a pure function of t, so all the above
  holds for the mix). Each source is read, resized and cropped as if it were alone.

  ``start_index`` counts BATCHES already consumed (global batch index == this process's batch
  index): ``train_iterator(..., start_index=k)`` yields exactly batches ``k, k+1, ...`` of a
  fresh iterator. Store ``iterator.batches_consumed`` in the checkpoint. A resumed run must use
  the same seed and global batch size G; it may use another process count (with ``b = G / P``).

  The returned iterator prefetches in a background thread; call ``close()`` (or use it as a
  context manager) to stop it early.
  """
  data_config.validate_data_config(cfg)
  data_config.check_resolution(resolution, batch_size)
  if start_index < 0:
    raise ValueError(f"start_index must be >= 0, got {start_index}.")
  process_index, process_count = _resolve_processes(process_index, process_count)
  specs = data_config.data_sources(cfg)
  data_sources = [_train_source(spec.cfg, resolution) for spec in specs]
  for spec, source in zip(specs, data_sources):
    logging.info(
      "train_iterator(%s): %d examples, weight %g.", spec.label, len(source), spec.weight
    )
  logging.info(
    "train_iterator: %d px, batch %d in process %d/%d (global %d), from batch %d.",
    resolution,
    batch_size,
    process_index,
    process_count,
    batch_size * process_count,
    start_index,
  )
  maker = _TrainBatches(
    cfg,
    data_sources,
    [spec.weight for spec in specs],
    resolution=resolution,
    batch_size=batch_size,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )
  return TrainIterator(cfg, maker, start_index, [spec.label for spec in specs])


def _train_source(cfg, resolution: int) -> sources.Source:
  """The training examples of the one source that ``cfg`` names."""
  name = cfg.get("name")
  n_limit = cfg.get("num_train_examples", None)
  if name == "synthetic":
    if n_limit and n_limit > synthetic.SPLIT_SIZES["train"]:
      raise ValueError(
        f"num_train_examples={n_limit} exceeds the synthetic train split "
        f"({synthetic.SPLIT_SIZES['train']} images); lower it or leave it None."
      )
    total = n_limit or synthetic.SPLIT_SIZES["train"]
    store_size = (
      crop_size(
        resolution, float(data_config.get(cfg, "org_to_crop", data_config.DEFAULT_ORG_TO_CROP))
      )
      if data_config.get(cfg, "random_crop", True)
      else resolution
    )
    source = sources.SyntheticSource(
      np.arange(total),
      sources.synthetic_render_resolution(resolution),
      store_size,
      int(data_config.get(cfg, "synthetic_seed", 0)),
      data_config.synthetic_layout(cfg),
      SYNTHETIC_CACHE_BYTES,
    )
  elif name == "folder":
    source = sources.folder_train_source(cfg, n_limit)
  elif name == "lsun_lmdb":
    source = sources.LmdbSource(cfg.get("path"), n_limit)
  else:
    source = tfds_sources.tfds_train_source(cfg, n_limit)
  if len(source) == 0:
    raise DataError(f"No training examples of {name!r}.")
  return source
