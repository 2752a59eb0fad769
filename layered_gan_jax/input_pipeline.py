"""Data for training and evaluation: synthetic, image folders and tfds -> numpy batches.

Two entry points, both returning iterators of numpy dicts (the trainer puts them on devices):

* :func:`train_iterator`: infinite, shuffled, randomly cropped real images for the GAN critic,
  ``{'image': float32 [batch_size, R, R, 3] in [-1, 1]}``.
* :func:`eval_dataset`: a finite, ordered pass over images with ground-truth masks,
  ``{'image', 'mask', 'index', 'valid'}``, padded to a fixed batch size (one compile under jit).

Design: every source is turned into a random-access list of examples (file paths, encoded
bytes read once from tfds, or indices of the synthetic dataset), so that each batch is a pure
function of ``(seed, global batch size, batch index)``. That makes resumption exact and cheap
(no replay), and makes the GLOBAL batch independent of the number of processes (see
"Multi-host" below). Batches are assembled by a thread pool (PIL decodes and resizes outside
the GIL) and prefetched by a background thread into a small bounded queue.

Training stream (every source): let N be the number of training examples (after bad files are
left out up front) and ``G = batch_size * process_count`` the global batch. Each epoch e has
one permutation of the N examples, derived from ``(seed, e)`` only (:func:`epoch_permutation`);
the infinite stream of examples is the concatenation of these permutations, epochs following
each other without a gap (so a global batch may straddle two epochs). Global batch k is stream
positions ``[k G, (k + 1) G)``; process p of P takes its rows ``[p b, (p + 1) b)``, with
``b = batch_size`` (the per-process batch). Crop offsets are a function of
``(seed, epoch, example index)``, independent of the process as well.

Training transform (SPEC section 4, "Real images"), identical for every source:
  1. square resize (aspect ratio not kept) of the original image to
     ``S = floor(org_to_crop * R + 0.5)`` (1.125 -> 72 px at 64, 144 at 128), with PIL's
     BILINEAR filter, which is antialiased (its triangle kernel widens with the downscale factor,
     like an area filter; this is also what torchvision's ``Resize`` does on PIL images);
  2. an ``R x R`` crop at a uniform random offset in ``[0, S - R]`` per axis, the offset a hash of
     ``(seed, epoch, example index)`` (no stateful RNG, no process dependence);
  3. no flip; ``x / 127.5 - 1``.
  With ``random_crop=False`` (poster ablation (e)) step 1 resizes straight to ``R`` and step 2
  is skipped.

Evaluation transform: the image is square-resized to ``R`` (same filter); the mask is read as a
float in ``[0, 1]``, square-resized to ``R`` with the same filter, then binarized with
``> 0.5``. Image and mask are resized independently, so a mask stored at another size than its
image (assumed to cover the same field of view) is handled; the folder source logs such files.

Data config fields (an ``ml_collections.ConfigDict`` or a dict; ``.get`` defaults shown):
  name: one of :data:`DATASET_NAMES`.                         (required)
  path: folder root, for name='folder'. Training reads ``path/images`` if it exists, else every
      image under ``path`` (recursively); evaluation reads ``path/images`` + ``path/masks``
      paired by relative path without extension (see ``image_io.pair_images_and_masks``).
  data_dir (None): tfds data_dir.
  download (False): let tfds download and prepare a missing dataset (LSUN is huge: prefer
      ``tfds build`` beforehand).
  num_train_examples (None): use only the first N training examples. None means: the whole
      synthetic train split, every image of a folder, 100000 (the reference) for tfds.
  org_to_crop (1.125), random_crop (True): see above.
  train_split ('train'): tfds split used for training.
  synthetic_seed (0): the seed of the synthetic dataset's content (not the training seed).
  cub_test_ids_path (None): for caltech_birds2011, the text file selecting ReDO's 1,000 test
      images (the evaluation split used by later papers). Accepted formats:
        - ReDO's ``train_val_test_split.txt`` itself (lines ``<image_id> <0|1|2>``, 2 = test);
          this needs ``cub_images_txt_path`` = CUB's ``images.txt`` (lines
          ``<image_id> <class_dir>/<file>.jpg``) to map ids to file names;
        - or one image per line: ``<class_dir>/<file>.jpg``, ``<file>.jpg``, ``<file>`` or
          ``<image_id> <class_dir>/<file>.jpg`` (a leading numeric id is dropped).
      Images are matched by file stem against tfds's ``image/filename`` over ``train+test``
      (CUB file names are unique). When set, evaluation uses exactly these images (ordered as
      in the file, whatever ``split`` says) and training uses ``train+test`` minus them.
  cub_images_txt_path (None): see above.
  pet_boundary_is_foreground (False): oxford_iiit_pet trimaps are 1 = pet, 2 = background,
      3 = boundary / not classified (dataset README). Foreground is ``trimap == 1``; the
      boundary band counts as background unless this is True.
  on_bad_file ('skip'): 'skip' or 'error'. Folder files are checked up front (empty, not an
      image); files that fail later when decoded (truncated) are handled the same way. Skipped
      files are logged by name and listed in the iterator's ``skipped_files``. In training a
      file that fails to decode is replaced, deterministically, by the next loadable example in
      index order (wrapping around), the same on every process; in evaluation its slot is
      padding (``valid=False``).
  on_missing_mask ('error'): 'error' or 'skip', for folder images without a mask.
  num_workers (min(16, cpus)), prefetch (2): decoding threads, prefetched batches.
  synthetic_cache_bytes (2 GiB): the synthetic training images, rendered and resized to
      1.125 R once, are kept in memory if the whole train split fits in this many bytes
      (1.24 GB for 20000 images at 128 px), else rendered each time.

Sources:
  synthetic: ``datasets.synthetic.render_example(split, i, R)``; stages below 16 px use the 16 px
    rendering (the smallest the dataset draws) as the original image. Training images are
    cached in memory after their first use (see synthetic_cache_bytes).
  folder: files are listed in sorted relative-path order; the first N are used; every process
    checks all N (header only, up front) and decodes the files its batches need from disk
    every time.
  tfds: the first N examples of ``train_split`` in file order (shuffle_files=False). EVERY
    process reads the whole ``split[:N]`` and keeps it in memory as ENCODED bytes, decoded on
    demand by PIL: the memory cost is the encoded size of N images on each host (about
    N * 30 KB: ~3 GB for the reference 100k LSUN JPEGs), whatever the process count. The bytes
    are cached per process, so later progressive stages and resumed iterators do not read
    tfds again (:func:`clear_caches` frees them). When the split size is unknown
    (tfds.testing.mock_data ignores split slicing and sizes) the first N are read in order.
  Multi-host: every process holds (random access to) all N examples and builds its rows of
  each global batch as described under "Training stream". A run on P processes with
  per-process batch b therefore feeds exactly the global batches of a one-process run with
  batch ``G = P b`` (given that the trainer assembles process p's rows as rows
  ``[p b, (p + 1) b)`` of the global array), and the stream depends on the seed and G only: a
  resumed run must use the same seed and global batch size, but may use another process count.

TensorFlow / tfds are imported lazily, on first use of a tfds source, and TensorFlow is then
denied any GPU so that it never takes accelerator memory from JAX (the accelerator image has
no TensorFlow: the synthetic and folder sources do not need it).
"""
from __future__ import annotations

import concurrent.futures
import io
import math
import os
import queue
import threading
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np
from PIL import Image

from layered_gan_jax import image_io
from layered_gan_jax.image_io import DataError

LSUN_NAMES = ('lsun/car', 'lsun/horse', 'lsun/chair', 'lsun/bird')
TFDS_NAMES = LSUN_NAMES + ('caltech_birds2011', 'oxford_iiit_pet')
DATASET_NAMES = ('synthetic', 'folder', 'lsun_lmdb') + TFDS_NAMES
# The names that have ground-truth masks (usable by eval_dataset with masks).
MASKED_NAMES = ('synthetic', 'folder', 'caltech_birds2011', 'oxford_iiit_pet')
REFERENCE_NUM_TRAIN_EXAMPLES = 100_000  # "The first 100k images of a category are used."
DEFAULT_ORG_TO_CROP = 1.125
MAX_ORG_TO_CROP = 4.0

# Feature keys of the tfds datasets we read.
_TFDS_FILENAME_KEY = {'caltech_birds2011': 'image/filename', 'oxford_iiit_pet': 'file_name'}
_SYNTHETIC_RESOLUTIONS = (16, 32, 64, 128)


# ---------------------------------------------------------------------------------------------
# Config.


def _get(cfg, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default)
  return default if value is None else value


def validate_data_config(cfg) -> None:
  """Raises ValueError (or DataError, a ValueError) naming the problem, before any heavy work."""
  name = cfg.get('name', None)
  if name not in DATASET_NAMES:
    raise ValueError(f"Unknown dataset name {name!r} in the data config; choose one of "
                     f"{', '.join(DATASET_NAMES)}.")
  if name == 'folder':
    path = cfg.get('path', None)
    if not path:
      raise ValueError("The data config has name='folder' but no path: set "
                       "--config.data.path=/your/folder (images, or images/ + masks/).")
    if not os.path.isdir(path):
      raise DataError(f"{path}: no such folder (the data config's path). Point it at a folder "
                      f"of images, or at a root holding images/ and masks/.")
  if name == 'lsun_lmdb':
    lmdb_entries(cfg.get('path', None))
  n = cfg.get('num_train_examples', None)
  if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
    raise ValueError(f"num_train_examples must be a positive integer or None, got {n!r}.")
  org_to_crop = cfg.get('org_to_crop', DEFAULT_ORG_TO_CROP)
  if org_to_crop is not None and not (isinstance(org_to_crop, (int, float)) and
                                      1.0 <= org_to_crop <= MAX_ORG_TO_CROP):
    raise ValueError(f"org_to_crop must be a number in [1, {MAX_ORG_TO_CROP:g}] (1.125 in the "
                     "reference), got "
                     f"{org_to_crop!r}.")
  random_crop = cfg.get('random_crop', True)
  if random_crop is not None and not isinstance(random_crop, bool):
    raise ValueError(f"random_crop must be True or False, got {random_crop!r}.")
  image_io.check_on_bad_file(_get(cfg, 'on_bad_file', 'skip'))
  if _get(cfg, 'on_missing_mask', 'error') not in ('error', 'skip'):
    raise ValueError(f"on_missing_mask must be 'error' or 'skip', got "
                     f"{cfg.get('on_missing_mask')!r}.")
  for key in ('cub_test_ids_path', 'cub_images_txt_path'):
    value = cfg.get(key, None)
    if value:
      if name != 'caltech_birds2011':
        raise ValueError(f"{key} is only used with name='caltech_birds2011' (name is "
                         f"{name!r}); remove it.")
      if not os.path.isfile(value):
        raise DataError(f"{value}: no such file (the data config's {key}).")


def _check_resolution(resolution: int, batch_size: int) -> None:
  if not isinstance(resolution, (int, np.integer)) or resolution < 4:
    raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}.")
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


# ---------------------------------------------------------------------------------------------
# Transforms (pure functions, tested against NumPy references).


def crop_size(resolution: int, org_to_crop: float = DEFAULT_ORG_TO_CROP) -> int:
  """Side of the resized square the random crop is taken from (round half up)."""
  return max(int(resolution), int(math.floor(org_to_crop * resolution + 0.5)))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]; PIL BILINEAR (antialiased when shrinking)."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  pil = Image.fromarray(np.ascontiguousarray(image))
  return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
  """float [H, W] in [0, 1] -> float32 [size, size], same filter as the images (not binarized)."""
  mask = np.asarray(mask, dtype=np.float32)
  if mask.shape == (size, size):
    return mask
  pil = Image.fromarray(np.ascontiguousarray(mask), mode='F')
  return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] via x / 127.5 - 1."""
  return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  z = x + _GOLDEN
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def _hash(*parts) -> np.ndarray:
  """A 64-bit hash of integer arrays/scalars (broadcast), elementwise."""
  with np.errstate(over='ignore'):
    h = np.zeros((), np.uint64)
    for p in parts:
      if isinstance(p, (int, np.integer)):
        p = np.uint64(int(p) % (1 << 64))
      else:  # Integer arrays: reinterpret the two's complement bits.
        p = np.ascontiguousarray(p, dtype=np.int64).view(np.uint64)
      h = _splitmix64(h ^ p)
    return h


def crop_offsets(seed: int, epochs, indices, max_offset: int) -> np.ndarray:
  """int64 [n, 2] (y, x) crop offsets, each uniform in [0, max_offset], a pure function of
  (seed, epoch, global example index)."""
  epochs, indices = np.broadcast_arrays(np.asarray(epochs), np.asarray(indices))
  n = np.uint64(max_offset + 1)
  oy = _hash(seed, epochs, indices, 1) % n
  ox = _hash(seed, epochs, indices, 2) % n
  return np.stack([oy, ox], axis=-1).astype(np.int64)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the training examples in one epoch of the stream, shared by all processes."""
  # The constant 0 was once the process index: kept so that one-process streams are unchanged.
  rng = np.random.default_rng([seed % (1 << 63), epoch, 0, 0x5EED])
  return rng.permutation(num_examples)


def _train_transform(image: np.ndarray, resolution: int, size: int,
                     offset: np.ndarray | None) -> np.ndarray:
  if offset is None:
    return resize_square(image, resolution)
  resized = resize_square(image, size)
  oy, ox = int(offset[0]), int(offset[1])
  return resized[oy:oy + resolution, ox:ox + resolution]


# ---------------------------------------------------------------------------------------------
# Random-access sources. Each holds all the training examples (every process has its own);
# ``load(i)`` returns the original uint8 [H, W, 3] image of example i (raising DataError if it
# cannot be decoded) and ``name(i)`` what to call it in messages.


class _Source:
  # int64 [n], the example's index among the first N (differs from i where bad files were left
  # out up front): what batch_indices reports and crop offsets are derived from.
  global_indices: np.ndarray
  skipped: list[str]

  def __len__(self) -> int:
    return len(self.global_indices)

  def load(self, i: int) -> np.ndarray:
    raise NotImplementedError

  def name(self, i: int) -> str:
    return f'example {int(self.global_indices[i])}'


class _FileSource(_Source):

  def __init__(self, files: Sequence[str], global_indices, skipped=()):
    self.files = list(files)
    self.global_indices = np.asarray(global_indices, dtype=np.int64)
    self.skipped = list(skipped)

  def load(self, i):
    return image_io.load_image(self.files[i])

  def name(self, i):
    return self.files[i]


class _EncodedSource(_Source):
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
    return f'{self.dataset} {self.names[i]}'


LMDB_WAYS = ("point --config.data.path at the folder holding LSUN's data.mdb (e.g. car_lmdb/ "
             "from LSUN's download), or use --config.data.name=lsun/car with a prepared tfds "
             "data_dir, or --config.data.name=folder with a folder of images")


_LMDB_ENVS: dict[str, Any] = {}  # lmdb allows one open environment per database and process.
_LMDB_LOCK = threading.Lock()


def _open_lmdb(path: str):
  import lmdb  # pylint: disable=g-import-not-at-top
  key = os.path.realpath(path)
  with _LMDB_LOCK:
    if key not in _LMDB_ENVS:
      _LMDB_ENVS[key] = lmdb.open(path, readonly=True, lock=False, readahead=False,
                                  subdir=True, max_readers=512)
    return _LMDB_ENVS[key]


def lmdb_entries(path) -> int:
  """The number of records of the lmdb database in folder ``path``; a DataError (one line,
  with the ways to provide the data) when there is none or it is empty."""
  if not path:
    raise ValueError(f"data.name='lsun_lmdb' needs a path: {LMDB_WAYS}.")
  if not os.path.isfile(os.path.join(path, 'data.mdb')):
    raise DataError(f"{path}: no lmdb database there (no data.mdb); {LMDB_WAYS}.")
  entries = _open_lmdb(path).stat()['entries']
  if not entries:
    raise DataError(f"{path}: the lmdb database is empty; {LMDB_WAYS}.")
  return int(entries)


class _LmdbSource(_Source):
  """The first N records of an LSUN lmdb database in cursor (key) order, as the reference run
  takes them; each value is an encoded image (mostly webp), decoded on demand. Every process
  reads the same keys; reader threads each open their own read transaction."""

  def __init__(self, path: str, n_limit: int | None):
    self.path = path
    self.env = _open_lmdb(path)
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
      raise DataError(f'{self.name(i)}: the key is gone from the database')
    return image_io.decode_image(value, self.name(i))

  def name(self, i):
    return f'{self.path} key {self.keys[i].decode("utf-8", "replace")}'


_SYNTHETIC_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
_SYNTHETIC_CACHE_LOCK = threading.Lock()


def _synthetic_render_resolution(resolution: int) -> int:
  """The synthetic dataset renders at 16..128 px: smaller stages use a 16 px rendering."""
  if resolution > _SYNTHETIC_RESOLUTIONS[-1]:
    raise ValueError(f"The synthetic dataset renders at most {_SYNTHETIC_RESOLUTIONS[-1]} px; "
                     f"resolution {resolution} is not available.")
  for r in _SYNTHETIC_RESOLUTIONS:
    if r >= resolution:
      return r
  raise AssertionError('unreachable')


class _SyntheticSource(_Source):
  """Synthetic train images rendered at ``render_res`` and square-resized to ``store_size``
  (the size the training transform resizes to, so this step is done once per image); cached in
  memory when the whole split fits in ``cache_bytes``."""

  def __init__(self, global_indices, render_res: int, store_size: int, dataset_seed: int,
               cache_bytes: int):
    from layered_gan_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
    self._render = synthetic.render_example
    self.global_indices = np.asarray(global_indices, dtype=np.int64)
    self.skipped = []
    self.render_res = render_res
    self.store_size = store_size
    self.seed = dataset_seed
    total = synthetic.SPLIT_SIZES['train']
    self._cache = None
    if total * store_size * store_size * 3 <= cache_bytes:
      key = (render_res, store_size, dataset_seed)
      with _SYNTHETIC_CACHE_LOCK:
        if key not in _SYNTHETIC_CACHE:
          # np.zeros is lazily committed: only the rows rendered so far use memory.
          _SYNTHETIC_CACHE[key] = (np.zeros((total, store_size, store_size, 3), np.uint8),
                                   np.zeros((total,), bool))
        self._cache = _SYNTHETIC_CACHE[key]

  def load(self, i):
    g = int(self.global_indices[i])
    if self._cache is not None:
      images, filled = self._cache
      if filled[g]:
        return images[g]
    image, _ = self._render('train', g, self.render_res, seed=self.seed)
    image = resize_square(np.asarray(image, dtype=np.uint8), self.store_size)
    if self._cache is not None:
      images[g] = image
      filled[g] = True
    return image

  def name(self, i):
    return f'synthetic train example {int(self.global_indices[i])}'


def clear_caches() -> None:
  """Frees the in-memory caches (rendered synthetic images, encoded tfds records)."""
  with _SYNTHETIC_CACHE_LOCK:
    _SYNTHETIC_CACHE.clear()
  _TFDS_CACHE.clear()


# ---------------------------------------------------------------------------------------------
# tfds reading.


def _import_tfds():
  """Imports tfds, keeping TensorFlow off the accelerators (JAX owns them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], 'GPU')
  except (RuntimeError, ValueError):  # Already initialized: leave it as it is.
    pass
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def check_tfds_prepared(cfg) -> None:
  """A DataError (one line, with the ways to provide the data) when a tfds dataset is neither
  prepared in ``data_dir`` nor to be downloaded; cheap: reads the builder's metadata only."""
  name = cfg.get('name')
  if name not in TFDS_NAMES or cfg.get('download', False):
    return
  tfds = _import_tfds()
  data_dir = cfg.get('data_dir', None)
  try:
    prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    prepared = False
  if not prepared:
    where = data_dir or '~/tensorflow_datasets'
    ways = (f"`tfds build {name} --data_dir={where}` (or --config.data.download=True)")
    if name in LSUN_NAMES:
      ways += (f", --config.data.name=lsun_lmdb --config.data.path=DIR/{name.split('/')[1]}"
               "_lmdb (LSUN's own database)")
    ways += ", or --config.data.name=folder --config.data.path=DIR (your images)"
    raise DataError(f"tfds dataset {name!r} is not prepared in {where}; provide it with {ways}")


def _split_size(tfds, name: str, split: str, data_dir) -> int | None:
  """Number of examples of a plain split, or None when unknown (not prepared, or mock data)."""
  try:
    info = tfds.builder(name, data_dir=data_dir).info
    if split in info.splits:
      return int(info.splits[split].num_examples) or None
  except Exception:  # pylint: disable=broad-except
    return None
  return None


def _tfds_records(cfg, split: str, features: Sequence[str], *, take: int | None = None,
                  keep: Callable[[dict], bool] | None = None) -> list[dict]:
  """Reads examples of one tfds dataset as numpy dicts, images/masks left encoded (bytes).

  Order is deterministic (shuffle_files=False). ``take`` bounds the number read (also when the
  split string's slicing is ignored, as under tfds.testing.mock_data); ``keep`` filters while
  streaming, so that large splits need not be held in memory.
  """
  tfds = _import_tfds()
  name, data_dir = cfg.get('name'), cfg.get('data_dir', None)
  encoded = [f for f in features if f in ('image', 'segmentation_mask')]
  decoders = tfds.decode.PartialDecoding(
      {f: True for f in features}, decoders={f: tfds.decode.SkipDecoding() for f in encoded})
  try:
    ds = tfds.load(name, split=split, data_dir=data_dir, download=bool(cfg.get('download', False)),
                   shuffle_files=False, decoders=decoders,
                   read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False))
  except (AssertionError, tfds.core.DatasetNotFoundError) as e:
    raise DataError(
        f"tfds dataset {name!r} (split {split!r}) is not available in data_dir "
        f"{data_dir or '~/tensorflow_datasets'}: {e}. Prepare it first (`tfds build {name} "
        f"--data_dir=...`, LSUN and CUB need a manual download on machines without internet), "
        f"set the data config's data_dir to where it is, or set download=True.") from e
  if take is not None and keep is None:
    ds = ds.take(take)
  out = []
  for ex in tfds.as_numpy(ds):
    if keep is not None and not keep(ex):
      continue
    out.append(ex)
    if take is not None and len(out) >= take:
      break
  return out


def _as_text(value) -> str:
  return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def _cub_stem(name: str) -> str:
  return os.path.splitext(os.path.basename(name.strip().replace('\\', '/')))[0].strip()


def read_cub_test_names(ids_path: str, images_txt_path: str | None = None) -> list[str]:
  """The stems of the CUB evaluation images listed by ``ids_path`` (see the module doc)."""
  with open(ids_path, encoding='utf-8') as f:
    lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith('#')]
  if not lines:
    raise DataError(f"{ids_path}: the CUB test id file is empty.")
  rows = [line.split() for line in lines]
  redo_format = all(len(r) == 2 and r[0].isdigit() and r[1] in ('0', '1', '2') for r in rows)
  if not redo_format:
    # '<image_id> <path>' (images.txt lines) or '<path>': drop a leading numeric id.
    return [_cub_stem(line.split(None, 1)[1] if len(r) > 1 and r[0].isdigit() else line)
            for line, r in zip(lines, rows)]
  if not images_txt_path:
    raise DataError(
        f"{ids_path} looks like ReDO's train_val_test_split.txt (lines '<image_id> <split>'), "
        f"whose ids refer to CUB's images.txt. Set the data config's cub_images_txt_path to "
        f"CUB_200_2011/images.txt, or give a file listing the test image names instead.")
  id_to_name = {}
  with open(images_txt_path, encoding='utf-8') as f:
    for line in f:
      parts = line.strip().split(None, 1)
      if len(parts) == 2:
        id_to_name[parts[0]] = parts[1]
  test_ids = [r[0] for r in rows if r[1] == '2']
  unknown = [i for i in test_ids if i not in id_to_name]
  if unknown:
    raise DataError(f"{len(unknown)} test ids of {ids_path} are not in {images_txt_path} "
                    f"(first: {unknown[:5]}); the two files do not belong together.")
  return [_cub_stem(id_to_name[i]) for i in test_ids]


def _cub_test_stems(cfg) -> list[str] | None:
  path = cfg.get('cub_test_ids_path', None)
  if cfg.get('name') != 'caltech_birds2011' or not path:
    return None
  return read_cub_test_names(path, cfg.get('cub_images_txt_path', None))


# Encoded training records per (dataset, data_dir, split expression): progressive-growing stages
# and resumed iterators reuse them instead of reading tfds again.
_TFDS_CACHE: dict[tuple, tuple[list[bytes], list[str], np.ndarray]] = {}


def _tfds_train_source(cfg, n_limit: int | None) -> _Source:
  """The first N training examples, all of them (every process reads the same ones)."""
  name = cfg.get('name')
  n_limit = n_limit or REFERENCE_NUM_TRAIN_EXAMPLES
  split = _get(cfg, 'train_split', 'train')
  filename_key = _TFDS_FILENAME_KEY.get(name)
  features = ['image'] + ([filename_key] if filename_key else [])
  test_stems = _cub_test_stems(cfg)
  key = (name, cfg.get('data_dir', None), split, n_limit, tuple(test_stems or ()))
  if key not in _TFDS_CACHE:
    logging.info('Reading up to %d encoded training images of tfds %s (%s).', n_limit, name,
                 split)
    tfds = _import_tfds()
    size = None if test_stems else _split_size(tfds, name, split, cfg.get('data_dir', None))
    if size is not None:
      # The usual path: tfds reads only the first N.
      total = min(n_limit, size)
      records = _tfds_records(cfg, f'{split}[:{total}]', features, take=total)
    else:
      # Split size unknown (mock data), or CUB with ReDO's test images held out: read the
      # first examples in order.
      if test_stems:
        split = 'train+test'
        excluded = set(test_stems)
        keep = lambda ex: _cub_stem(_as_text(ex[filename_key])) not in excluded
      else:
        keep = None
      records = _tfds_records(cfg, split, features, take=n_limit, keep=keep)
    names = [_as_text(r[filename_key]) if filename_key else f'{split} example {j}'
             for j, r in enumerate(records)]
    _TFDS_CACHE[key] = ([r['image'] for r in records], names, np.arange(len(records)))
  encoded, names, global_indices = _TFDS_CACHE[key]
  if not len(encoded):
    raise DataError(f"tfds {name} split {split!r} gave no training examples; check "
                    f"num_train_examples and the split.")
  return _EncodedSource(name, encoded, names, global_indices)


# ---------------------------------------------------------------------------------------------
# Background prefetching.


class _Failure:

  def __init__(self, exc: BaseException):
    self.exc = exc


_END = object()


class _Prefetcher:
  """Computes ``make_batch(k)`` for k = start, start + 1, ... (up to ``stop``) in a thread."""

  def __init__(self, make_batch: Callable[[int], dict], start: int, stop: int | None,
               depth: int):
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=_Prefetcher._run, args=(make_batch, start, stop, self._queue, self._stop),
        daemon=True, name='input_pipeline_prefetch')
    self._thread.start()

  @staticmethod
  def _run(make_batch, start, stop, q, stop_event):
    k = start
    while not stop_event.is_set() and (stop is None or k < stop):
      try:
        item = make_batch(k)
      except BaseException as e:  # pylint: disable=broad-except
        item = _Failure(e)
      while not stop_event.is_set():
        try:
          q.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if isinstance(item, _Failure):
        return
      k += 1
    while not stop_event.is_set():
      try:
        q.put(_END, timeout=0.1)
        return
      except queue.Full:
        continue

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


def _num_workers(cfg) -> int:
  return int(_get(cfg, 'num_workers', min(16, os.cpu_count() or 1)))


def _parallel_map(pool, workers: int, fn, items: list) -> list:
  """fn over items, in order, in a few chunks (one per worker) to keep task overhead low."""
  if workers <= 1 or len(items) <= 1:
    return [fn(x) for x in items]
  chunk = -(-len(items) // workers)
  parts = [items[i:i + chunk] for i in range(0, len(items), chunk)]
  results = pool.map(lambda part: [fn(x) for x in part], parts)
  return [y for part in results for y in part]


class _BatchIterator:
  """User-facing iterator over ``maker.make(k)``: prefetching, clean shutdown.

  The prefetch thread only references ``maker`` (never this wrapper), so dropping the wrapper
  garbage-collects it, which stops the thread.
  """

  def __init__(self, cfg, maker, start: int, stop: int | None):
    self._maker = maker
    self._next = start
    self._prefetcher = _Prefetcher(maker.make, start, stop, int(_get(cfg, 'prefetch', 2)))

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


# ---------------------------------------------------------------------------------------------
# Training.


class _TrainBatches:
  """This process's rows of global batch k of the training stream, as a pure function of k."""

  def __init__(self, cfg, source: _Source, *, resolution: int, batch_size: int, seed: int,
               process_index: int, process_count: int):
    self.workers = _num_workers(cfg)
    self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                      thread_name_prefix='input_pipeline')
    self.source = source
    self.resolution = resolution
    self.batch_size = batch_size
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.global_batch_size = batch_size * process_count
    self.random_crop = bool(_get(cfg, 'random_crop', True))
    self.size = crop_size(resolution, float(_get(cfg, 'org_to_crop', DEFAULT_ORG_TO_CROP)))
    self.on_bad_file = image_io.check_on_bad_file(_get(cfg, 'on_bad_file', 'skip'))
    self.skipped_files = list(source.skipped)
    self._perms: dict[int, np.ndarray] = {}
    self._bad_local: set[int] = set()
    self._lock = threading.Lock()

  def _permutation(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._perms:
        if len(self._perms) > 4:
          self._perms.pop(min(self._perms))
        self._perms[epoch] = epoch_permutation(len(self.source), self.seed, epoch)
      return self._perms[epoch]

  def plan(self, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, source example) of each of this process's rows of global batch k."""
    n = len(self.source)
    first = k * self.global_batch_size + self.process_index * self.batch_size
    positions = np.arange(first, first + self.batch_size, dtype=np.int64)  # In the stream.
    epochs, within = positions // n, positions % n
    local = np.empty_like(positions)
    for e in np.unique(epochs):
      sel = epochs == e
      local[sel] = self._permutation(int(e))[within[sel]]
    return epochs, local

  def _load_good(self, local: int) -> np.ndarray:
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
        if self.on_bad_file == 'error':
          raise
        with self._lock:
          if i not in self._bad_local:
            self._bad_local.add(i)
            self.skipped_files.append(self.source.name(i))
            logging.warning('Skipping bad training example (replaced by the next one): %s', e)
    raise DataError(f"Every training example ({n}) failed to load; see the "
                    f"warnings above for the files and the reason.")

  def make(self, k: int) -> dict:
    epochs, local = self.plan(k)
    global_idx = self.source.global_indices[local]
    if self.random_crop:
      offsets = crop_offsets(self.seed, epochs, global_idx, self.size - self.resolution)
    else:
      offsets = [None] * len(local)

    def one(j):
      return _train_transform(self._load_good(int(local[j])), self.resolution, self.size,
                              offsets[j])

    images = _parallel_map(self.pool, self.workers, one, list(range(len(local))))
    return {'image': to_float(np.stack(images))}


class TrainIterator(_BatchIterator):
  """Infinite iterator of training batches; see :func:`train_iterator`.

  Attributes:
    batches_consumed: start_index + the number of batches returned so far (global batch index
      == this process's batch index): the value to store in a checkpoint and pass back as
      ``start_index`` to resume.
    examples_per_epoch: N, the training examples of one epoch (the same on every process).
    global_batch_size: ``batch_size * process_count``.
    skipped_files: names of the files left out (bad files) by this process so far.
  """

  def __init__(self, cfg, maker: _TrainBatches, start_index: int):
    self.examples_per_epoch = len(maker.source)
    self.global_batch_size = maker.global_batch_size
    super().__init__(cfg, maker, start_index, None)

  @property
  def batches_consumed(self) -> int:
    return self._next

  def batch_indices(self, k: int) -> np.ndarray:
    """Example indices of this process's rows of global batch k (before any bad-file
    substitution); pure. Concatenated over processes 0..P-1 they are the indices of a
    one-process run's batch k with batch size ``global_batch_size``."""
    return self._maker.source.global_indices[self._maker.plan(k)[1]]

  def crop_offsets_of_batch(self, k: int) -> np.ndarray | None:
    """int64 [batch_size, 2] (y, x) crop offsets of this process's rows of global batch k
    (None without random crops)."""
    if not self._maker.random_crop:
      return None
    epochs, local = self._maker.plan(k)
    return crop_offsets(self._maker.seed, epochs, self._maker.source.global_indices[local],
                        self._maker.size - self._maker.resolution)


def _resolve_processes(process_index, process_count) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count="
                     f"{process_count}).")
  return int(process_index), int(process_count)


def _folder_train_source(cfg, n_limit) -> _Source:
  root = cfg.get('path')
  image_root = os.path.join(root, 'images')
  files = image_io.list_images(image_root if os.path.isdir(image_root) else root)
  if n_limit:
    files = files[:n_limit]
  good, skipped = image_io.scan_files(files, _get(cfg, 'on_bad_file', 'skip'))
  if not good:
    raise DataError(f"{root}: none of the {len(files)} image files can be read (see the "
                    f"warnings above). Fix or replace the files.")
  position = {f: j for j, f in enumerate(files)}
  return _FileSource(good, [position[f] for f in good], skipped)


def train_iterator(cfg, *, resolution: int, batch_size: int, seed: int, start_index: int = 0,
                   process_index: int | None = None,
                   process_count: int | None = None) -> TrainIterator:
  """Infinite iterator of ``{'image': float32 [batch_size, R, R, 3] in [-1, 1]}``.

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
  memory; see the module doc).

  ``start_index`` counts BATCHES already consumed (global batch index == this process's batch
  index): ``train_iterator(..., start_index=k)`` yields exactly batches ``k, k+1, ...`` of a
  fresh iterator. Store ``iterator.batches_consumed`` in the checkpoint. A resumed run must use
  the same seed and global batch size G; it may use another process count (with ``b = G / P``).

  The returned iterator prefetches in a background thread; call ``close()`` (or use it as a
  context manager) to stop it early.
  """
  validate_data_config(cfg)
  _check_resolution(resolution, batch_size)
  if start_index < 0:
    raise ValueError(f"start_index must be >= 0, got {start_index}.")
  process_index, process_count = _resolve_processes(process_index, process_count)
  name = cfg.get('name')
  n_limit = cfg.get('num_train_examples', None)
  if name == 'synthetic':
    from layered_gan_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
    if n_limit and n_limit > synthetic.SPLIT_SIZES['train']:
      raise ValueError(f"num_train_examples={n_limit} exceeds the synthetic train split "
                       f"({synthetic.SPLIT_SIZES['train']} images); lower it or leave it None.")
    total = n_limit or synthetic.SPLIT_SIZES['train']
    store_size = (crop_size(resolution, float(_get(cfg, 'org_to_crop', DEFAULT_ORG_TO_CROP)))
                  if _get(cfg, 'random_crop', True) else resolution)
    source = _SyntheticSource(np.arange(total), _synthetic_render_resolution(resolution),
                              store_size, int(_get(cfg, 'synthetic_seed', 0)),
                              int(_get(cfg, 'synthetic_cache_bytes', 2 << 30)))
  elif name == 'folder':
    source = _folder_train_source(cfg, n_limit)
  elif name == 'lsun_lmdb':
    source = _LmdbSource(cfg.get('path'), n_limit)
  else:
    source = _tfds_train_source(cfg, n_limit)
  if len(source) == 0:
    raise DataError(f"No training examples of {name!r}.")
  logging.info('train_iterator(%s): %d examples, %d px, batch %d in process %d/%d (global '
               '%d), from batch %d.', name, len(source), resolution, batch_size, process_index,
               process_count, batch_size * process_count, start_index)
  maker = _TrainBatches(cfg, source, resolution=resolution, batch_size=batch_size, seed=seed,
                        process_index=process_index, process_count=process_count)
  return TrainIterator(cfg, maker, start_index)


# ---------------------------------------------------------------------------------------------
# Evaluation.


class _EvalSource:
  """n examples; ``load(i)`` -> (uint8 image [h, w, 3], float mask [h', w'] in [0, 1] or None)."""

  def __init__(self, n: int, load: Callable[[int], tuple], name: Callable[[int], str],
               skipped=()):
    self.n, self.load, self.name, self.skipped = n, load, name, list(skipped)


class _EvalBatches:
  """Batch k of an evaluation pass (padded to batch_size)."""

  def __init__(self, cfg, source: _EvalSource, *, resolution: int, batch_size: int,
               with_masks: bool):
    self.workers = _num_workers(cfg)
    self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                      thread_name_prefix='input_pipeline')
    self.source = source
    self.resolution = resolution
    self.batch_size = batch_size
    self.with_masks = with_masks
    self.on_bad_file = image_io.check_on_bad_file(_get(cfg, 'on_bad_file', 'skip'))
    self.skipped_files = list(source.skipped)
    self._lock = threading.Lock()

  def _one(self, i: int):
    r = self.resolution
    try:
      image, mask = self.source.load(i)
    except DataError as e:
      if self.on_bad_file == 'error':
        raise
      with self._lock:
        self.skipped_files.append(self.source.name(i))
      logging.warning('Skipping bad evaluation example (padding, valid=False): %s', e)
      return None
    image = resize_square(image, r)
    if mask is not None:
      mask = (resize_mask(mask, r) > 0.5).astype(np.float32)
    return image, mask

  def make(self, k: int) -> dict:
    b, r = self.batch_size, self.resolution
    idx = list(range(k * b, min((k + 1) * b, self.source.n)))
    results = _parallel_map(self.pool, self.workers, self._one, idx)
    images = np.zeros((b, r, r, 3), np.uint8)
    masks = np.zeros((b, r, r), np.float32)
    index = np.full((b,), -1, np.int32)
    valid = np.zeros((b,), bool)
    for j, (i, res) in enumerate(zip(idx, results)):
      index[j] = i
      if res is None:
        continue
      images[j] = res[0]
      if res[1] is not None:
        masks[j] = res[1]
      valid[j] = True
    batch = {'image': to_float(images), 'index': index, 'valid': valid}
    if self.with_masks:
      batch['mask'] = masks
    return batch


class EvalIterator(_BatchIterator):
  """Finite iterator over an evaluation set; see :func:`eval_dataset`.

  Attributes: num_examples, num_batches (also ``len()``), skipped_files.
  """

  def __init__(self, cfg, maker: _EvalBatches):
    self.num_examples = maker.source.n
    self.num_batches = -(-maker.source.n // maker.batch_size)
    super().__init__(cfg, maker, 0, self.num_batches)

  def __len__(self) -> int:
    return self.num_batches


def _synthetic_eval_source(cfg, resolution, split, max_examples) -> _EvalSource:
  from layered_gan_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
  if split not in synthetic.SPLIT_SIZES:
    raise ValueError(f"The synthetic dataset has splits {sorted(synthetic.SPLIT_SIZES)}, not "
                     f"{split!r}.")
  n = synthetic.SPLIT_SIZES[split]
  n = min(n, max_examples) if max_examples else n
  render_res = _synthetic_render_resolution(resolution)
  dataset_seed = int(_get(cfg, 'synthetic_seed', 0))

  def load(i):
    image, mask = synthetic.render_example(split, i, render_res, seed=dataset_seed)
    return np.asarray(image, np.uint8), np.asarray(mask, np.float32)

  return _EvalSource(n, load, lambda i: f'synthetic {split} example {i}')


_SIZE_WARNINGS = [0]


def _folder_eval_source(cfg, max_examples, with_masks) -> _EvalSource:
  on_bad_file = _get(cfg, 'on_bad_file', 'skip')
  if not with_masks:
    root = cfg.get('path')
    image_root = os.path.join(root, 'images')
    files = image_io.list_images(image_root if os.path.isdir(image_root) else root)
    files = files[:max_examples] if max_examples else files
    good, skipped = image_io.scan_files(files, on_bad_file)
    return _EvalSource(len(good), lambda i: (image_io.load_image(good[i]), None),
                       lambda i: good[i], skipped)
  paired = image_io.pair_images_and_masks(cfg.get('path'),
                                          on_missing_mask=_get(cfg, 'on_missing_mask', 'error'))
  pairs = paired.pairs[:max_examples] if max_examples else paired.pairs
  good_images, bad_images = image_io.scan_files([p[0] for p in pairs], on_bad_file)
  good_masks, bad_masks = image_io.scan_files([p[1] for p in pairs], on_bad_file)
  ok_images, ok_masks = set(good_images), set(good_masks)
  kept = [p for p in pairs if p[0] in ok_images and p[1] in ok_masks]
  if not kept:
    raise DataError(f"{cfg.get('path')}: no usable image/mask pair (see the warnings above).")

  def load(i):
    image_path, mask_path = kept[i]
    image, mask = image_io.load_image(image_path), image_io.load_mask(mask_path)
    if image.shape[:2] != mask.shape and _SIZE_WARNINGS[0] < 20:
      _SIZE_WARNINGS[0] += 1
      logging.warning('Mask %s is %dx%d but its image %s is %dx%d: both are resized to the '
                      'evaluation resolution independently (same field of view assumed).',
                      mask_path, mask.shape[1], mask.shape[0], image_path, image.shape[1],
                      image.shape[0])
    return image, mask

  return _EvalSource(len(kept), load, lambda i: kept[i][0],
                     list(paired.images_without_mask) + bad_images + bad_masks)


def _tfds_mask_to_float(cfg, mask: np.ndarray) -> np.ndarray:
  mask = mask[..., 0] if mask.ndim == 3 else mask
  if cfg.get('name') == 'oxford_iiit_pet':
    fg = mask == 1
    if cfg.get('pet_boundary_is_foreground', False):
      fg |= mask == 3
    return fg.astype(np.float32)
  return mask.astype(np.float32) / 255.0  # caltech_birds2011: 0..255 annotator agreement.


def _tfds_eval_source(cfg, split, max_examples, with_masks) -> _EvalSource:
  name = cfg.get('name')
  filename_key = _TFDS_FILENAME_KEY.get(name)
  features = ['image'] + ([filename_key] if filename_key else []) + (
      ['segmentation_mask'] if with_masks else [])
  test_stems = _cub_test_stems(cfg)
  if test_stems:
    order = {s: j for j, s in enumerate(test_stems)}
    records = _tfds_records(cfg, 'train+test', features,
                            keep=lambda ex: _cub_stem(_as_text(ex[filename_key])) in order)
    found = {_cub_stem(_as_text(r[filename_key])) for r in records}
    missing = [s for s in test_stems if s not in found]
    if missing:
      raise DataError(f"{len(missing)} of the {len(test_stems)} CUB test images listed in "
                      f"{cfg.get('cub_test_ids_path')} are not in tfds caltech_birds2011 "
                      f"train+test (first: {missing[:5]}). Check the file's format (see "
                      f"input_pipeline's docs) and the tfds version.")
    records.sort(key=lambda r: order[_cub_stem(_as_text(r[filename_key]))])
    records = records[:max_examples] if max_examples else records
  else:
    split_expr = f'{split}[:{max_examples}]' if max_examples else split
    records = _tfds_records(cfg, split_expr, features, take=max_examples)
  if not records:
    raise DataError(f"tfds {name} split {split!r} is empty.")

  def name_of(i):
    return (f'{name} {_as_text(records[i][filename_key])}' if filename_key
            else f'{name} {split} example {i}')

  def load(i):
    r = records[i]
    image = image_io.decode_image(r['image'], name_of(i))
    mask = None
    if with_masks:
      raw = np.asarray(Image.open(io.BytesIO(r['segmentation_mask'])))
      mask = _tfds_mask_to_float(cfg, raw)
    return image, mask

  return _EvalSource(len(records), load, name_of)


def eval_data_config(config):
  """The data ``evaluate`` reads: ``config.eval.data`` (name, path) over ``config.data``; by
  default (no ``eval.data.name``) the training dataset's test split."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  data = ml_collections.ConfigDict(config.data.to_dict())
  if config.eval.data.name:
    data.name = config.eval.data.name
    data.path = config.eval.data.path
  return data


def eval_dataset(cfg, *, resolution: int, batch_size: int, split: str = 'test',
                 max_examples: int | None = None, with_masks: bool = True) -> EvalIterator:
  """One ordered pass over an evaluation set, in batches padded to ``batch_size``.

  Yields ``{'image': float32 [B, R, R, 3] in [-1, 1], 'mask': float32 [B, R, R] in {0, 1},
  'index': int32 [B], 'valid': bool [B]}`` with ``B = batch_size`` always: the last batch is
  padded with zero images/masks, ``index = -1`` and ``valid = False`` (so one jit compile serves
  every batch; average metrics over valid rows). ``index`` is the example's position in the
  evaluation set. No crop: images and masks are square-resized to R (see the module doc).

  Sources: synthetic: the ``split`` of the embedded dataset (``SPLIT_SIZES['test']`` images
  for 'test'); folder: ``path/images`` + ``path/masks``; caltech_birds2011: tfds ``split``, or
  ReDO's 1,000 test images when ``cub_test_ids_path`` is set; oxford_iiit_pet: tfds ``split``,
  foreground = trimap 1. LSUN has no masks: it needs ``with_masks=False`` (then no 'mask' key
  is yielded, for any source). ``max_examples`` keeps the first N examples.

  Every process gets the whole set; shard by ``index`` if needed.
  """
  validate_data_config(cfg)
  _check_resolution(resolution, batch_size)
  name = cfg.get('name')
  if with_masks and name not in MASKED_NAMES:
    raise ValueError(f"{name} has no ground-truth masks. Evaluate segmentation on "
                     f"{', '.join(MASKED_NAMES)}, or call eval_dataset(..., with_masks=False) "
                     f"for images only.")
  if max_examples is not None and max_examples <= 0:
    raise ValueError(f"max_examples must be positive or None, got {max_examples}.")
  if name == 'synthetic':
    source = _synthetic_eval_source(cfg, resolution, split, max_examples)
  elif name == 'folder':
    source = _folder_eval_source(cfg, max_examples, with_masks)
  elif name == 'lsun_lmdb':
    raise ValueError("lsun_lmdb is a training source (LSUN has no test masks); evaluate on "
                     "--config.eval.data.name=folder or another dataset")
  else:
    source = _tfds_eval_source(cfg, split, max_examples, with_masks)
  logging.info('eval_dataset(%s, %s): %d examples, %d px, batch %d.', name, split, source.n,
               resolution, batch_size)
  maker = _EvalBatches(cfg, source, resolution=resolution, batch_size=batch_size,
                       with_masks=with_masks)
  return EvalIterator(cfg, maker)
