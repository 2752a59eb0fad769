"""Random-access sources of examples (file, encoded bytes, lmdb, synthetic, folder; evaluation).

A training source holds all the training examples (every process has its own); ``load(i)``
returns the original uint8 [H, W, 3] image of example i (raising DataError if it cannot be
decoded) and ``name(i)`` what to call it in messages.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Sequence

import numpy as np
from etils import epath

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import image_io, lmdb_database, synthetic
from layered_gan_jax.data.transforms import resize_square
from layered_gan_jax.errors import DataError

SYNTHETIC_RESOLUTIONS = (16, 32, 64, 128)


class Source:
  # int64 [n], the example's index among the first N (differs from i where bad files were left
  # out up front): what batch_indices reports and crop offsets are derived from.
  global_indices: np.ndarray
  skipped: list[str]

  def __len__(self) -> int:
    return len(self.global_indices)

  def load(self, i: int) -> np.ndarray:
    raise NotImplementedError

  def name(self, i: int) -> str:
    return f"example {int(self.global_indices[i])}"


class FileSource(Source):
  def __init__(self, files: Sequence[str], global_indices, skipped=()):
    self.files = list(files)
    self.global_indices = np.asarray(global_indices, dtype=np.int64)
    self.skipped = list(skipped)

  def load(self, i):
    return image_io.load_image(self.files[i])

  def name(self, i):
    return self.files[i]


class EncodedSource(Source):
  """Encoded image bytes (read once from tfds), decoded on demand."""

  def __init__(self, dataset: str, encoded: list[bytes], names: list[str], global_indices):
    self.dataset = dataset
    self.encoded = encoded
    self.names = names
    self.global_indices = np.asarray(global_indices, dtype=np.int64)
    self.skipped = []

  def load(self, i):
    return image_io.decode_image(self.encoded[i], self.name(i))

  def name(self, i):
    return f"{self.dataset} {self.names[i]}"


class LmdbSource(Source):
  """The first N records of an LSUN lmdb database in cursor (key) order, as the reference run
  takes them; each value is an encoded image (mostly webp), decoded on demand. Every process
  reads the same keys; reader threads each open their own read transaction."""

  def __init__(self, path: str, n_limit: int | None):
    self.path = path
    self.env = lmdb_database.open_lmdb(path)
    keys = []
    with self.env.begin() as txn:
      for key in txn.cursor().iternext(keys=True, values=False):
        keys.append(bytes(key))
        if n_limit and len(keys) >= n_limit:
          break
    self.keys = keys
    self.global_indices = np.arange(len(keys), dtype=np.int64)
    self.skipped = []

  def load(self, i):
    with self.env.begin() as txn:
      value = txn.get(self.keys[i])
    if value is None:
      raise DataError(f"{self.name(i)}: the key is gone from the database")
    return image_io.decode_image(value, self.name(i))

  def name(self, i):
    return f"{self.path} key {self.keys[i].decode('utf-8', 'replace')}"


_SYNTHETIC_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_SYNTHETIC_CACHE_LOCK = threading.Lock()


def synthetic_render_resolution(resolution: int) -> int:
  """The synthetic dataset renders at 16..128 px: smaller stages use a 16 px rendering."""
  if resolution > SYNTHETIC_RESOLUTIONS[-1]:
    raise ValueError(
      f"The synthetic dataset renders at most {SYNTHETIC_RESOLUTIONS[-1]} px; "
      f"resolution {resolution} is not available."
    )
  for r in SYNTHETIC_RESOLUTIONS:
    if r >= resolution:
      return r
  raise AssertionError("unreachable")


class SyntheticSource(Source):
  """Synthetic train images rendered at ``render_res`` and square-resized to ``store_size``
  (the size the training transform resizes to, so this step is done once per image); cached in
  memory when the whole split fits in ``cache_bytes``."""

  def __init__(
    self,
    global_indices,
    render_res: int,
    store_size: int,
    dataset_seed: int,
    layout,
    cache_bytes: int,
  ):
    self._render = synthetic.render_example
    self.global_indices = np.asarray(global_indices, dtype=np.int64)
    self.skipped = []
    self.render_res = render_res
    self.store_size = store_size
    self.seed, self.layout = dataset_seed, layout
    total = synthetic.SPLIT_SIZES["train"]
    self._cache = None
    if total * store_size * store_size * 3 <= cache_bytes:
      key = (render_res, store_size, dataset_seed, layout)
      with _SYNTHETIC_CACHE_LOCK:
        if key not in _SYNTHETIC_CACHE:
          # np.zeros is lazily committed: only the rows rendered so far use memory.
          _SYNTHETIC_CACHE[key] = (
            np.zeros((total, store_size, store_size, 3), np.uint8),
            np.zeros((total,), bool),
          )
        self._cache = _SYNTHETIC_CACHE[key]

  def load(self, i):
    g = int(self.global_indices[i])
    if self._cache is not None:
      images, filled = self._cache
      if filled[g]:
        return images[g]
    image, _ = self._render("train", g, self.render_res, seed=self.seed, layout=self.layout)
    image = resize_square(np.asarray(image, dtype=np.uint8), self.store_size)
    if self._cache is not None:
      images[g] = image
      filled[g] = True
    return image

  def name(self, i):
    return f"synthetic train example {int(self.global_indices[i])}"


def clear_synthetic_cache() -> None:
  """Frees the rendered synthetic training images kept in memory."""
  with _SYNTHETIC_CACHE_LOCK:
    _SYNTHETIC_CACHE.clear()


def folder_train_source(cfg, n_limit) -> Source:
  root = cfg.get("path")
  image_root = os.fspath(epath.Path(root) / "images")
  files = image_io.list_images(image_root if epath.Path(image_root).is_dir() else root)
  if n_limit:
    files = files[:n_limit]
  good, skipped = image_io.scan_files(files, data_config.get(cfg, "on_bad_file", "skip"))
  if not good:
    raise DataError(
      f"{root}: none of the {len(files)} image files can be read (see the "
      f"warnings above). Fix or replace the files."
    )
  position = {f: j for j, f in enumerate(files)}
  return FileSource(good, [position[f] for f in good], skipped)


class EvalSource:
  """n examples; ``load(i)`` -> (uint8 image [h, w, 3], float mask [h', w'] in [0, 1] or None)."""

  def __init__(self, n: int, load: Callable[[int], tuple], name: Callable[[int], str], skipped=()):
    self.n, self.load, self.name, self.skipped = n, load, name, list(skipped)
