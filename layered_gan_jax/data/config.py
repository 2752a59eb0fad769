"""The data config: dataset names, defaults and checks (cheap: no data is read, no heavy import).

The fields of a data config are described in docs/data.md.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
from etils import epath

from layered_gan_jax.data import image_io, lmdb_database
from layered_gan_jax.errors import DataError

LSUN_NAMES = ("lsun/car", "lsun/horse", "lsun/chair", "lsun/bird")
TFDS_NAMES = LSUN_NAMES + ("caltech_birds2011", "oxford_iiit_pet")
DATASET_NAMES = ("synthetic", "folder", "lsun_lmdb") + TFDS_NAMES
# The names that have ground-truth masks (usable by eval_dataset with masks).
MASKED_NAMES = ("synthetic", "folder", "caltech_birds2011", "oxford_iiit_pet")
REFERENCE_NUM_TRAIN_EXAMPLES = 100_000  # "The first 100k images of a category are used."
DEFAULT_ORG_TO_CROP = 1.125
MAX_ORG_TO_CROP = 4.0


def get(cfg, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default)
  return default if value is None else value


def synthetic_layout(cfg):
  """The synthetic dataset's layout (``synthetic.Layout``): the dataset's own, or that of the
  category ``synthetic_category`` names, with the fields that the data config's
  ``synthetic_layout`` sets replaced (an experiment's variant)."""
  # Imported here: this module is on the path of every command before JAX starts, and the
  # renderer's imports (cv2) are not.
  from layered_gan_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  category = get(cfg, "synthetic_category", "")
  if category and category not in synthetic.CATEGORIES:
    raise ValueError(
      f"the synthetic dataset has no category {category!r}; choose one of "
      f"{', '.join(map(repr, synthetic.CATEGORIES))} ('' = all of it)."
    )
  base = synthetic.CATEGORIES[category] if category else synthetic.LAYOUT
  given = cfg.get("synthetic_layout", None) or {}
  fields = {k: v for k, v in given.items() if v is not None}
  known = [f.name for f in dataclasses.fields(synthetic.Layout)]
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise ValueError(
      f"synthetic_layout has no field(s) {', '.join(unknown)}; it has {', '.join(known)}."
    )
  for key in ("bg_textures", "fg_textures", "shapes"):
    if key in fields:
      fields[key] = tuple(float(w) for w in fields[key])
  return dataclasses.replace(base, **fields)


@dataclasses.dataclass(frozen=True)
class DataSource:
  """One source of a data config: what logs and metrics call it, its weight in the mix, and
  the data config of it alone (the shared fields, with its own name and path)."""

  label: str
  weight: float
  cfg: Any


def sources_problem(sources) -> str | None:
  """What is wrong with the form of a ``sources`` tuple, after its field's name (None when
  nothing): each entry is ``(name, path)`` or ``(name, path, weight)``, with a known name, a
  string path and a weight > 0. Cheap: no path is looked at."""
  if not isinstance(sources, (tuple, list)):
    return f"={sources!r} must be a tuple of (name, path, weight) entries"
  for j, entry in enumerate(sources):
    if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
      return f"[{j}]={entry!r} must be (name, path) or (name, path, weight)"
    if entry[0] not in DATASET_NAMES:
      return f"[{j}]: unknown source kind {entry[0]!r}; choose one of {', '.join(DATASET_NAMES)}"
    if not isinstance(entry[1], str):
      return f"[{j}]: the path {entry[1]!r} must be a string ('' where the kind needs none)"
    weight = entry[2] if len(entry) == 3 else 1.0
    if (
      isinstance(weight, bool)
      or not isinstance(weight, numbers.Real)
      or not 0 < weight < float("inf")
    ):
      return f"[{j}]: the weight {weight!r} of {entry[0]!r} must be a number > 0"
  return None


def _source_label(name: str, where: str) -> str:
  """A source's short name: the synthetic category, the folder's or database's last path
  component, the tfds name."""
  if name == "synthetic":
    return where or "synthetic"
  if name in ("folder", "lsun_lmdb"):
    return where.rstrip("/").rsplit("/", 1)[-1] or name
  return name


def data_sources(cfg) -> list[DataSource]:
  """The sources of a data config: one per entry of ``sources`` (the form is checked: a
  ValueError otherwise), else the config itself, weight 1. An entry's path is the folder
  (folder, lsun_lmdb), the category (synthetic; '' = all of it) or the tfds data_dir ('' = the
  config's); every other field is shared."""
  entries = cfg.get("sources", None) or ()
  if not entries:
    name = cfg.get("name", None)
    where = get(cfg, "synthetic_category" if name == "synthetic" else "path", "")
    return [DataSource(_source_label(name, where), 1.0, cfg)]
  problem = sources_problem(entries)
  if problem:
    raise ValueError(f"sources{problem}")
  shared = {k: v for k, v in cfg.items() if k != "sources"}
  found = []
  for entry in entries:
    name, where = entry[0], entry[1]
    one = dict(shared, name=name)
    if name == "synthetic":
      one["synthetic_category"] = where
    elif name in TFDS_NAMES:
      one["data_dir"] = where or cfg.get("data_dir", None)
    else:
      one["path"] = where
    found.append((name, where, float(entry[2]) if len(entry) == 3 else 1.0, one))
  labels = [_source_label(name, where) for name, where, _, _ in found]
  if len(set(labels)) < len(labels):
    labels = [f"{name}:{where}" if where else name for name, where, _, _ in found]
  if len(set(labels)) < len(labels):
    labels = [f"{label}#{j}" for j, label in enumerate(labels)]
  return [DataSource(label, weight, one) for label, (_, _, weight, one) in zip(labels, found)]


def validate_data_config(cfg) -> None:
  """Raises ValueError (or DataError, a ValueError) naming the problem, before any heavy work.
  With ``sources``: every source's (its name and path; the shared fields)."""
  if cfg.get("sources", None):
    for j, source in enumerate(data_sources(cfg)):
      try:
        validate_data_config(source.cfg)
      except ValueError as e:
        raise type(e)(f"sources[{j}] ({source.label}): {e}") from None
    return
  name = cfg.get("name", None)
  if name not in DATASET_NAMES:
    raise ValueError(
      f"Unknown dataset name {name!r} in the data config; choose one of {', '.join(DATASET_NAMES)}."
    )
  if name == "folder":
    path = cfg.get("path", None)
    if not path:
      raise ValueError(
        "The data config has name='folder' but no path: set "
        "--config.data.path=/your/folder (images, or images/ + masks/)."
      )
    if not epath.Path(path).is_dir():  # Local, or an object store (gs://...).
      raise DataError(
        f"{path}: no such folder (the data config's path). Point it at a folder "
        f"of images, or at a root holding images/ and masks/."
      )
  if name == "lsun_lmdb":
    lmdb_database.lmdb_entries(cfg.get("path", None))
  if name == "synthetic":
    synthetic_layout(cfg)
  n = cfg.get("num_train_examples", None)
  if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
    raise ValueError(f"num_train_examples must be a positive integer or None, got {n!r}.")
  org_to_crop = cfg.get("org_to_crop", DEFAULT_ORG_TO_CROP)
  if org_to_crop is not None and not (
    isinstance(org_to_crop, (int, float)) and 1.0 <= org_to_crop <= MAX_ORG_TO_CROP
  ):
    raise ValueError(
      f"org_to_crop must be a number in [1, {MAX_ORG_TO_CROP:g}] (1.125 in the "
      "reference), got "
      f"{org_to_crop!r}."
    )
  random_crop = cfg.get("random_crop", True)
  if random_crop is not None and not isinstance(random_crop, bool):
    raise ValueError(f"random_crop must be True or False, got {random_crop!r}.")
  image_io.check_on_bad_file(get(cfg, "on_bad_file", "skip"))
  if get(cfg, "on_missing_mask", "error") not in ("error", "skip"):
    raise ValueError(
      f"on_missing_mask must be 'error' or 'skip', got {cfg.get('on_missing_mask')!r}."
    )
  for key in ("cub_test_ids_path", "cub_images_txt_path"):
    value = cfg.get(key, None)
    if value:
      if name != "caltech_birds2011":
        raise ValueError(
          f"{key} is only used with name='caltech_birds2011' (name is {name!r}); remove it."
        )
      if not epath.Path(value).is_file():
        raise DataError(f"{value}: no such file (the data config's {key}).")


def check_resolution(resolution: int, batch_size: int) -> None:
  if not isinstance(resolution, (int, np.integer)) or resolution < 4:
    raise ValueError(f"resolution must be an integer >= 4, got {resolution!r}.")
  if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")


def eval_data_config(config):
  """The data ``evaluate`` reads: ``config.eval.data`` (sources, or name and path) over
  ``config.data``; by default (neither set) the training sources' test splits."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  data = ml_collections.ConfigDict(config.data.to_dict())
  if config.eval.data.get("sources", None):
    data.sources = tuple(config.eval.data.sources)
  elif config.eval.data.name:
    data.name = config.eval.data.name
    data.path = config.eval.data.path
    if "sources" in data:
      data.sources = ()
  return data


EVAL_SET_HOWTO = (
  "give one with --config.eval.data.name=folder --config.eval.data.path=DIR (DIR "
  "holding images/ and masks/ with matching file names) or "
  "--config.eval.data.name=caltech_birds2011 (CUB), or several with "
  "--config.eval.data.sources=\"(('folder','DIR1'),('folder','DIR2'))\""
)


def check_eval_data(cfg, where: str = "eval.data") -> None:
  """A DataError (one line) unless ``cfg`` names an evaluation set with masks: a dataset that
  has them, and for 'folder' a path holding images/ and masks/ (cheap: no file is read); with
  ``sources``, each of them."""
  if cfg.get("sources", None):
    for j, source in enumerate(data_sources(cfg)):
      check_eval_data(source.cfg, f"{where}.sources[{j}] ({source.label})")
    return
  name = cfg.get("name", None)
  if name not in MASKED_NAMES:
    raise DataError(
      f"{where}: {name!r} has no ground-truth masks, so segmentation cannot be "
      f"scored on it; {EVAL_SET_HOWTO}"
    )
  if name == "folder":
    root = cfg.get("path", None)
    missing = [sub + "/" for sub in ("images", "masks") if not (epath.Path(root) / sub).is_dir()]
    if missing:
      raise DataError(
        f"{where}: {root} has no {' and no '.join(missing)} (an evaluation set "
        f"needs both, with matching file names); point --config.eval.data.path "
        f"at such a folder, or use --config.eval.data.name=caltech_birds2011 (CUB)"
      )


CUB_SPLIT_SIZES = {"train": 5_994, "test": 5_794}  # tfds caltech_birds2011.


def cub_split_note(cfg) -> tuple[str, bool] | None:
  """(One line saying which CUB images train and which evaluate, whether it is a warning:
  ReDO's split not given) for a caltech_birds2011 data config; None for other datasets."""
  if cfg.get("name", None) != "caltech_birds2011":
    return None
  n = cfg.get("num_train_examples", None)
  if cfg.get("cub_test_ids_path", None):
    return (
      f"CUB, ReDO's split: training on tfds train+test minus the test images listed in "
      f"{cfg.cub_test_ids_path} (the first {n or 'all'}), evaluating on those",
      False,
    )
  split = get(cfg, "train_split", "train")
  size = CUB_SPLIT_SIZES.get(split)
  return (
    f"CUB without data.cub_test_ids_path: training on tfds '{split}' "
    f"({min(n, size) if n and size else n or size or 'all'} images) and evaluating on tfds "
    f"'test' ({CUB_SPLIT_SIZES['test']} images), not ReDO's split; set "
    "--config.data.cub_test_ids_path=FILE (ReDO's 1,000 test images) for it",
    True,
  )
