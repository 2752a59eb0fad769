"""Evaluation sets: :func:`eval_dataset`, one ordered pass over images with ground-truth masks,
in batches padded to a fixed size (one compile under jit)."""

from __future__ import annotations

import os

import numpy as np
from absl import logging
from etils import epath

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import image_io, prefetch, sources, synthetic, tfds_sources
from layered_gan_jax.data.transforms import resize_mask, resize_square, to_float
from layered_gan_jax.errors import DataError


class _EvalBatches(prefetch.DecodingBatches):
  """Batch k of an evaluation pass (padded to batch_size)."""

  def __init__(
    self,
    cfg,
    source: sources.EvalSource,
    labels: np.ndarray,
    *,
    resolution: int,
    batch_size: int,
    with_masks: bool,
  ):
    super().__init__(cfg, source.skipped)
    self.source = source
    self.labels = labels  # int32 [n]: which source each example is from.
    self.resolution = resolution
    self.batch_size = batch_size
    self.with_masks = with_masks

  def _one(self, i: int):
    r = self.resolution
    try:
      image, mask = self.source.load(i)
    except DataError as e:
      if self.on_bad_file == "error":
        raise
      with self._lock:
        self.skipped_files.append(self.source.name(i))
      logging.warning("Skipping bad evaluation example (padding, valid=False): %s", e)
      return None
    image = resize_square(image, r)
    if mask is not None:
      mask = (resize_mask(mask, r) > 0.5).astype(np.float32)
    return image, mask

  def make(self, k: int) -> dict:
    b, r = self.batch_size, self.resolution
    idx = list(range(k * b, min((k + 1) * b, self.source.n)))
    results = prefetch.parallel_map(self.pool, self.workers, self._one, idx)
    images = np.zeros((b, r, r, 3), np.uint8)
    masks = np.zeros((b, r, r), np.float32)
    index = np.full((b,), -1, np.int32)
    source = np.full((b,), -1, np.int32)
    valid = np.zeros((b,), bool)
    for j, (i, res) in enumerate(zip(idx, results)):
      index[j] = i
      source[j] = self.labels[i]
      if res is None:
        continue
      images[j] = res[0]
      if res[1] is not None:
        masks[j] = res[1]
      valid[j] = True
    batch = {"image": to_float(images), "index": index, "source": source, "valid": valid}
    if self.with_masks:
      batch["mask"] = masks
    return batch


class EvalIterator(prefetch.BatchIterator):
  """Finite iterator over an evaluation set; see :func:`eval_dataset`.

  Attributes: num_examples, num_batches (also ``len()``), source_names (``batch['source']``
  indexes them), source_sizes (examples of each), skipped_files.
  """

  def __init__(self, cfg, maker: _EvalBatches, source_names: list[str]):
    self.num_examples = maker.source.n
    self.source_names = list(source_names)
    self.source_sizes = np.bincount(maker.labels, minlength=len(source_names)).tolist()
    self.num_batches = -(-maker.source.n // maker.batch_size)
    super().__init__(cfg, maker, 0, self.num_batches)

  def __len__(self) -> int:
    return self.num_batches


def _synthetic_eval_source(cfg, resolution, split, max_examples) -> sources.EvalSource:
  if split not in synthetic.SPLIT_SIZES:
    raise ValueError(
      f"The synthetic dataset has splits {sorted(synthetic.SPLIT_SIZES)}, not {split!r}."
    )
  n = synthetic.SPLIT_SIZES[split]
  n = min(n, max_examples) if max_examples else n
  render_res = sources.synthetic_render_resolution(resolution)
  dataset_seed = int(data_config.get(cfg, "synthetic_seed", 0))
  layout = data_config.synthetic_layout(cfg)

  def load(i):
    image, mask = synthetic.render_example(split, i, render_res, seed=dataset_seed, layout=layout)
    return np.asarray(image, np.uint8), np.asarray(mask, np.float32)

  category = data_config.get(cfg, "synthetic_category", "")
  where = f"synthetic {category} {split}" if category else f"synthetic {split}"
  return sources.EvalSource(n, load, lambda i: f"{where} example {i}")


_SIZE_WARNINGS = [0]


def _folder_eval_source(cfg, max_examples, with_masks) -> sources.EvalSource:
  on_bad_file = data_config.get(cfg, "on_bad_file", "skip")
  if not with_masks:
    root = cfg.get("path")
    image_root = os.fspath(epath.Path(root) / "images")
    files = image_io.list_images(image_root if epath.Path(image_root).is_dir() else root)
    files = files[:max_examples] if max_examples else files
    good, skipped = image_io.scan_files(files, on_bad_file)
    return sources.EvalSource(
      len(good), lambda i: (image_io.load_image(good[i]), None), lambda i: good[i], skipped
    )
  paired = image_io.pair_images_and_masks(
    cfg.get("path"), on_missing_mask=data_config.get(cfg, "on_missing_mask", "error")
  )
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
      logging.warning(
        "Mask %s is %dx%d but its image %s is %dx%d: both are resized to the "
        "evaluation resolution independently (same field of view assumed).",
        mask_path,
        mask.shape[1],
        mask.shape[0],
        image_path,
        image.shape[1],
        image.shape[0],
      )
    return image, mask

  return sources.EvalSource(
    len(kept), load, lambda i: kept[i][0], list(paired.images_without_mask) + bad_images + bad_masks
  )


def _concatenated(parts: list[sources.EvalSource]) -> sources.EvalSource:
  """The examples of ``parts``, one after the other."""
  if len(parts) == 1:
    return parts[0]
  starts = np.cumsum([0] + [p.n for p in parts])

  def find(i):
    j = int(np.searchsorted(starts, i, side="right")) - 1
    return parts[j], i - int(starts[j])

  def load(i):
    part, r = find(i)
    return part.load(r)

  def name(i):
    part, r = find(i)
    return part.name(r)

  return sources.EvalSource(int(starts[-1]), load, name, [f for p in parts for f in p.skipped])


def eval_dataset(
  cfg,
  *,
  resolution: int,
  batch_size: int,
  split: str = "test",
  max_examples: int | None = None,
  with_masks: bool = True,
) -> EvalIterator:
  """One ordered pass over an evaluation set, in batches padded to ``batch_size``.

  Yields ``{'image': float32 [B, R, R, 3] in [-1, 1], 'mask': float32 [B, R, R] in {0, 1},
  'index': int32 [B], 'source': int32 [B], 'valid': bool [B]}`` with ``B = batch_size``
  always: the last batch is padded with zero images/masks, ``index = source = -1`` and
  ``valid = False`` (so one jit compile serves every batch; average metrics over valid rows).
  ``index`` is the example's position in the evaluation set, ``source`` which of
  ``iterator.source_names`` it is from. No crop: images and masks are square-resized to R (see
  docs/data.md).

  Sources: synthetic: the ``split`` of the embedded dataset (``SPLIT_SIZES['test']`` images
  for 'test'); folder: ``path/images`` + ``path/masks``; caltech_birds2011: tfds ``split``, or
  ReDO's 1,000 test images when ``cub_test_ids_path`` is set; oxford_iiit_pet: tfds ``split``,
  foreground = trimap 1. LSUN has no masks: it needs ``with_masks=False`` (then no 'mask' key
  is yielded, for any source). ``max_examples`` keeps the first N examples.

  Several sources (``cfg.sources``): the sets of every source one after the other, each read
  as it would be alone (``max_examples`` applies to each).

  Every process gets the whole set; shard by ``index`` if needed.
  """
  data_config.validate_data_config(cfg)
  data_config.check_resolution(resolution, batch_size)
  if max_examples is not None and max_examples <= 0:
    raise ValueError(f"max_examples must be positive or None, got {max_examples}.")
  specs = data_config.data_sources(cfg)
  parts = [_eval_source(spec.cfg, resolution, split, max_examples, with_masks) for spec in specs]
  for spec, part in zip(specs, parts):
    logging.info(
      "eval_dataset(%s, %s): %d examples, %d px, batch %d.",
      spec.label,
      split,
      part.n,
      resolution,
      batch_size,
    )
  labels = np.repeat(np.arange(len(parts), dtype=np.int32), [p.n for p in parts])
  maker = _EvalBatches(
    cfg,
    _concatenated(parts),
    labels,
    resolution=resolution,
    batch_size=batch_size,
    with_masks=with_masks,
  )
  return EvalIterator(cfg, maker, [spec.label for spec in specs])


def _eval_source(cfg, resolution, split, max_examples, with_masks) -> sources.EvalSource:
  """The evaluation examples of the one source that ``cfg`` names."""
  name = cfg.get("name")
  if with_masks and name not in data_config.MASKED_NAMES:
    raise ValueError(
      f"{name} has no ground-truth masks. Evaluate segmentation on "
      f"{', '.join(data_config.MASKED_NAMES)}, or call "
      f"eval_dataset(..., with_masks=False) for images only."
    )
  if name == "synthetic":
    return _synthetic_eval_source(cfg, resolution, split, max_examples)
  if name == "folder":
    return _folder_eval_source(cfg, max_examples, with_masks)
  if name == "lsun_lmdb":
    raise ValueError(
      "lsun_lmdb is a training source (LSUN has no test masks); evaluate on "
      "--config.eval.data.name=folder or another dataset"
    )
  return tfds_sources.tfds_eval_source(cfg, split, max_examples, with_masks)
