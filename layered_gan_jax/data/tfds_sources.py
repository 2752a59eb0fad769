"""TensorFlow Datasets sources: training examples kept encoded in memory, evaluation records
with masks, and the selection of ReDO's CUB test images.

TensorFlow / tfds are imported on first use only, with TensorFlow denied any GPU.
"""

from __future__ import annotations

import io
import os
from typing import Callable, Sequence

import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import image_io
from layered_gan_jax.data.sources import EncodedSource, EvalSource, Source
from layered_gan_jax.errors import DataError

# Feature keys of the tfds datasets we read.
_TFDS_FILENAME_KEY = {"caltech_birds2011": "image/filename", "oxford_iiit_pet": "file_name"}


def _import_tfds():
  """Imports tfds, keeping TensorFlow off the accelerators (JAX owns them)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.set_visible_devices([], "GPU")
  except (RuntimeError, ValueError):  # Already initialized: leave it as it is.
    pass
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  return tfds


def check_tfds_prepared(cfg) -> None:
  """A DataError (one line, with the ways to provide the data) when a tfds dataset is neither
  prepared in ``data_dir`` nor to be downloaded; cheap: reads the builder's metadata only."""
  name = cfg.get("name")
  if name not in data_config.TFDS_NAMES or cfg.get("download", False):
    return
  tfds = _import_tfds()
  data_dir = cfg.get("data_dir", None)
  try:
    prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except
    prepared = False
  if not prepared:
    where = data_dir or "~/tensorflow_datasets"
    ways = f"`tfds build {name} --data_dir={where}` (or --config.data.download=True)"
    if name in data_config.LSUN_NAMES:
      ways += (
        f", --config.data.name=lsun_lmdb --config.data.path=DIR/{name.split('/')[1]}"
        "_lmdb (LSUN's own database)"
      )
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


def _tfds_records(
  cfg,
  split: str,
  features: Sequence[str],
  *,
  take: int | None = None,
  keep: Callable[[dict], bool] | None = None,
) -> list[dict]:
  """Reads examples of one tfds dataset as numpy dicts, images/masks left encoded (bytes).

  Order is deterministic (shuffle_files=False). ``take`` bounds the number read (also when the
  split string's slicing is ignored, as under tfds.testing.mock_data); ``keep`` filters while
  streaming, so that large splits need not be held in memory.
  """
  tfds = _import_tfds()
  name, data_dir = cfg.get("name"), cfg.get("data_dir", None)
  encoded = [f for f in features if f in ("image", "segmentation_mask")]
  decoders = tfds.decode.PartialDecoding(
    {f: True for f in features}, decoders={f: tfds.decode.SkipDecoding() for f in encoded}
  )
  try:
    ds = tfds.load(
      name,
      split=split,
      data_dir=data_dir,
      download=bool(cfg.get("download", False)),
      shuffle_files=False,
      decoders=decoders,
      read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False),
    )
  except (AssertionError, tfds.core.DatasetNotFoundError) as e:
    raise DataError(
      f"tfds dataset {name!r} (split {split!r}) is not available in data_dir "
      f"{data_dir or '~/tensorflow_datasets'}: {e}. Prepare it first (`tfds build {name} "
      f"--data_dir=...`, LSUN and CUB need a manual download on machines without internet), "
      f"set the data config's data_dir to where it is, or set download=True."
    ) from e
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
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cub_stem(name: str) -> str:
  return os.path.splitext(os.path.basename(name.strip().replace("\\", "/")))[0].strip()


def read_cub_test_names(ids_path: str, images_txt_path: str | None = None) -> list[str]:
  """The stems of the CUB evaluation images listed by ``ids_path`` (formats: docs/data.md)."""
  with epath.Path(ids_path).open(encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
  if not lines:
    raise DataError(f"{ids_path}: the CUB test id file is empty.")
  rows = [line.split() for line in lines]
  redo_format = all(len(r) == 2 and r[0].isdigit() and r[1] in ("0", "1", "2") for r in rows)
  if not redo_format:
    # '<image_id> <path>' (images.txt lines) or '<path>': drop a leading numeric id.
    return [
      _cub_stem(line.split(None, 1)[1] if len(r) > 1 and r[0].isdigit() else line)
      for line, r in zip(lines, rows)
    ]
  if not images_txt_path:
    raise DataError(
      f"{ids_path} looks like ReDO's train_val_test_split.txt (lines '<image_id> <split>'), "
      f"whose ids refer to CUB's images.txt. Set the data config's cub_images_txt_path to "
      f"CUB_200_2011/images.txt, or give a file listing the test image names instead."
    )
  id_to_name = {}
  with epath.Path(images_txt_path).open(encoding="utf-8") as f:
    for line in f:
      parts = line.strip().split(None, 1)
      if len(parts) == 2:
        id_to_name[parts[0]] = parts[1]
  test_ids = [r[0] for r in rows if r[1] == "2"]
  unknown = [i for i in test_ids if i not in id_to_name]
  if unknown:
    raise DataError(
      f"{len(unknown)} test ids of {ids_path} are not in {images_txt_path} "
      f"(first: {unknown[:5]}); the two files do not belong together."
    )
  return [_cub_stem(id_to_name[i]) for i in test_ids]


def _cub_test_stems(cfg) -> list[str] | None:
  path = cfg.get("cub_test_ids_path", None)
  if cfg.get("name") != "caltech_birds2011" or not path:
    return None
  return read_cub_test_names(path, cfg.get("cub_images_txt_path", None))


# Encoded training records per (dataset, data_dir, split expression): progressive-growing stages
# and resumed iterators reuse them instead of reading tfds again.
_TFDS_CACHE: dict[tuple, tuple[list[bytes], list[str], np.ndarray]] = {}


def clear_tfds_cache() -> None:
  """Frees the encoded tfds training records kept in memory."""
  _TFDS_CACHE.clear()


def tfds_train_source(cfg, n_limit: int | None) -> Source:
  """The first N training examples, all of them (every process reads the same ones)."""
  name = cfg.get("name")
  n_limit = n_limit or data_config.REFERENCE_NUM_TRAIN_EXAMPLES
  split = data_config.get(cfg, "train_split", "train")
  filename_key = _TFDS_FILENAME_KEY.get(name)
  features = ["image"] + ([filename_key] if filename_key else [])
  test_stems = _cub_test_stems(cfg)
  key = (name, cfg.get("data_dir", None), split, n_limit, tuple(test_stems or ()))
  if key not in _TFDS_CACHE:
    logging.info("Reading up to %d encoded training images of tfds %s (%s).", n_limit, name, split)
    tfds = _import_tfds()
    size = None if test_stems else _split_size(tfds, name, split, cfg.get("data_dir", None))
    if size is not None:
      # The usual path: tfds reads only the first N.
      total = min(n_limit, size)
      records = _tfds_records(cfg, f"{split}[:{total}]", features, take=total)
    else:
      # Split size unknown (mock data), or CUB with ReDO's test images held out: read the
      # first examples in order.
      if test_stems:
        split = "train+test"
        excluded = set(test_stems)
        keep = lambda ex: _cub_stem(_as_text(ex[filename_key])) not in excluded
      else:
        keep = None
      records = _tfds_records(cfg, split, features, take=n_limit, keep=keep)
    names = [
      _as_text(r[filename_key]) if filename_key else f"{split} example {j}"
      for j, r in enumerate(records)
    ]
    _TFDS_CACHE[key] = ([r["image"] for r in records], names, np.arange(len(records)))
  encoded, names, global_indices = _TFDS_CACHE[key]
  if not len(encoded):
    raise DataError(
      f"tfds {name} split {split!r} gave no training examples; check "
      f"num_train_examples and the split."
    )
  return EncodedSource(name, encoded, names, global_indices)


def _tfds_mask_to_float(cfg, mask: np.ndarray) -> np.ndarray:
  mask = mask[..., 0] if mask.ndim == 3 else mask
  if cfg.get("name") == "oxford_iiit_pet":
    fg = mask == 1
    if cfg.get("pet_boundary_is_foreground", False):
      fg |= mask == 3
    return fg.astype(np.float32)
  return mask.astype(np.float32) / 255.0  # caltech_birds2011: 0..255 annotator agreement.


def tfds_eval_source(cfg, split, max_examples, with_masks) -> EvalSource:
  name = cfg.get("name")
  filename_key = _TFDS_FILENAME_KEY.get(name)
  features = (
    ["image"]
    + ([filename_key] if filename_key else [])
    + (["segmentation_mask"] if with_masks else [])
  )
  test_stems = _cub_test_stems(cfg)
  if test_stems:
    order = {s: j for j, s in enumerate(test_stems)}
    records = _tfds_records(
      cfg, "train+test", features, keep=lambda ex: _cub_stem(_as_text(ex[filename_key])) in order
    )
    found = {_cub_stem(_as_text(r[filename_key])) for r in records}
    missing = [s for s in test_stems if s not in found]
    if missing:
      raise DataError(
        f"{len(missing)} of the {len(test_stems)} CUB test images listed in "
        f"{cfg.get('cub_test_ids_path')} are not in tfds caltech_birds2011 "
        f"train+test (first: {missing[:5]}). Check the file's format (see "
        f"docs/data.md) and the tfds version."
      )
    records.sort(key=lambda r: order[_cub_stem(_as_text(r[filename_key]))])
    records = records[:max_examples] if max_examples else records
  else:
    split_expr = f"{split}[:{max_examples}]" if max_examples else split
    records = _tfds_records(cfg, split_expr, features, take=max_examples)
  if not records:
    raise DataError(f"tfds {name} split {split!r} is empty.")

  def name_of(i):
    return (
      f"{name} {_as_text(records[i][filename_key])}"
      if filename_key
      else f"{name} {split} example {i}"
    )

  def load(i):
    r = records[i]
    image = image_io.decode_image(r["image"], name_of(i))
    mask = None
    if with_masks:
      raw = np.asarray(Image.open(io.BytesIO(r["segmentation_mask"])))
      mask = _tfds_mask_to_float(cfg, raw)
    return image, mask

  return EvalSource(len(records), load, name_of)
