"""The data config: dataset names, defaults and checks (cheap: no data is read, no heavy import).

The fields of a data config are described in docs/data.md.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from etils import epath
import numpy as np

from layered_gan_jax import image_io
from layered_gan_jax.data import lmdb_database
from layered_gan_jax.image_io import DataError

LSUN_NAMES = ('lsun/car', 'lsun/horse', 'lsun/chair', 'lsun/bird')
TFDS_NAMES = LSUN_NAMES + ('caltech_birds2011', 'oxford_iiit_pet')
DATASET_NAMES = ('synthetic', 'folder', 'lsun_lmdb') + TFDS_NAMES
# The names that have ground-truth masks (usable by eval_dataset with masks).
MASKED_NAMES = ('synthetic', 'folder', 'caltech_birds2011', 'oxford_iiit_pet')
REFERENCE_NUM_TRAIN_EXAMPLES = 100_000  # "The first 100k images of a category are used."
DEFAULT_ORG_TO_CROP = 1.125
MAX_ORG_TO_CROP = 4.0


def get(cfg, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default)
  return default if value is None else value


def synthetic_layout(cfg):
  """The synthetic dataset's layout (``synthetic.Layout``): the dataset's own, with the fields
  that the data config's ``synthetic_layout`` sets replaced (an experiment's variant)."""
  from layered_gan_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
  given = cfg.get('synthetic_layout', None) or {}
  fields = {k: v for k, v in given.items() if v is not None}
  known = [f.name for f in dataclasses.fields(synthetic.Layout)]
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise ValueError(f"synthetic_layout has no field(s) {', '.join(unknown)}; it has "
                     f"{', '.join(known)}.")
  if 'bg_textures' in fields:
    fields['bg_textures'] = tuple(float(w) for w in fields['bg_textures'])
  return dataclasses.replace(synthetic.LAYOUT, **fields)


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
    if not epath.Path(path).is_dir():  # Local, or an object store (gs://...).
      raise DataError(f"{path}: no such folder (the data config's path). Point it at a folder "
                      f"of images, or at a root holding images/ and masks/.")
  if name == 'lsun_lmdb':
    lmdb_database.lmdb_entries(cfg.get('path', None))
  if name == 'synthetic':
    synthetic_layout(cfg)
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
  image_io.check_on_bad_file(get(cfg, 'on_bad_file', 'skip'))
  if get(cfg, 'on_missing_mask', 'error') not in ('error', 'skip'):
    raise ValueError(f"on_missing_mask must be 'error' or 'skip', got "
                     f"{cfg.get('on_missing_mask')!r}.")
  for key in ('cub_test_ids_path', 'cub_images_txt_path'):
    value = cfg.get(key, None)
    if value:
      if name != 'caltech_birds2011':
        raise ValueError(f"{key} is only used with name='caltech_birds2011' (name is "
                         f"{name!r}); remove it.")
      if not epath.Path(value).is_file():
        raise DataError(f"{value}: no such file (the data config's {key}).")


def check_resolution(resolution: int, batch_size: int) -> None:
  if not isinstance(resolution, (int, np.integer)) or resolution < 4:
    raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}.")
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


def eval_data_config(config):
  """The data ``evaluate`` reads: ``config.eval.data`` (name, path) over ``config.data``; by
  default (no ``eval.data.name``) the training dataset's test split."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  data = ml_collections.ConfigDict(config.data.to_dict())
  if config.eval.data.name:
    data.name = config.eval.data.name
    data.path = config.eval.data.path
  return data


EVAL_SET_HOWTO = ("give one with --config.eval.data.name=folder --config.eval.data.path=DIR (DIR "
                  "holding images/ and masks/ with matching file names) or "
                  "--config.eval.data.name=caltech_birds2011 (CUB)")


def check_eval_data(cfg, where: str = 'eval.data') -> None:
  """A DataError (one line) unless ``cfg`` names an evaluation set with masks: a dataset that
  has them, and for 'folder' a path holding images/ and masks/ (cheap: no file is read)."""
  name = cfg.get('name', None)
  if name not in MASKED_NAMES:
    raise DataError(f"{where}: {name!r} has no ground-truth masks, so segmentation cannot be "
                    f"scored on it; {EVAL_SET_HOWTO}")
  if name == 'folder':
    root = cfg.get('path', None)
    missing = [sub + '/' for sub in ('images', 'masks')
               if not (epath.Path(root) / sub).is_dir()]
    if missing:
      raise DataError(f"{where}: {root} has no {' and no '.join(missing)} (an evaluation set "
                      f"needs both, with matching file names); point --config.eval.data.path "
                      f"at such a folder, or use --config.eval.data.name=caltech_birds2011 (CUB)")


CUB_SPLIT_SIZES = {'train': 5_994, 'test': 5_794}  # tfds caltech_birds2011.


def cub_split_note(cfg) -> tuple[str, bool] | None:
  """(One line saying which CUB images train and which evaluate, whether it is a warning:
  ReDO's split not given) for a caltech_birds2011 data config; None for other datasets."""
  if cfg.get('name', None) != 'caltech_birds2011':
    return None
  n = cfg.get('num_train_examples', None)
  if cfg.get('cub_test_ids_path', None):
    return (f"CUB, ReDO's split: training on tfds train+test minus the test images listed in "
            f"{cfg.cub_test_ids_path} (the first {n or 'all'}), evaluating on those", False)
  split = get(cfg, 'train_split', 'train')
  size = CUB_SPLIT_SIZES.get(split)
  return (f"CUB without data.cub_test_ids_path: training on tfds '{split}' "
          f"({min(n, size) if n and size else n or size or 'all'} images) and evaluating on tfds "
          f"'test' ({CUB_SPLIT_SIZES['test']} images), not ReDO's split; set "
          "--config.data.cub_test_ids_path=FILE (ReDO's 1,000 test images) for it", True)
