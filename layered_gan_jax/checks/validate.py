"""The config as a whole, before anything compiles, loads data or touches the workdir.

Two phases:

* :func:`validate_config` (before JAX starts): every field by its rule
  (:mod:`layered_gan_jax.checks.fields`), then the rules that relate fields, then the data
  each mode reads (:mod:`layered_gan_jax.checks.data`: cheap checks, paths, names, a prepared
  tfds dataset).
* :func:`validate_devices` (once the device count is known): every batch divides by it.

Every problem raises :class:`~layered_gan_jax.errors.ConfigError` (or the data's
:class:`~layered_gan_jax.errors.DataError`) with one line saying what is wrong and how to fix
it. Imports no JAX.
"""

from typing import Dict, Optional

from layered_gan_jax import names
from layered_gan_jax.checks import data, fields
from layered_gan_jax.checks.fields import check
from layered_gan_jax.nets.architecture import parse_resolution_map


def validate_config(config, mode: str = "train", num_devices: Optional[int] = None) -> None:
  """Phase 1 (before JAX starts): every field, the rules between fields, the data ``mode``
  reads. With ``num_devices``, phase 2 (:func:`validate_devices`) too."""
  check(mode in names.MODES, f"unknown mode {mode!r}; choose one of {', '.join(names.MODES)}")
  fields.validate_fields(config)
  t, m, l = config.train, config.model, config.loss
  check(
    t.start_resolution <= t.resolution,
    f"train.start_resolution={t.start_resolution} is above train.resolution="
    f"{t.resolution}; set start_resolution <= resolution",
  )
  check(
    len(m.channels) >= t.resolution.bit_length() - 2,
    f"model.channels has {len(m.channels)} entries but train.resolution={t.resolution} "
    f"needs {t.resolution.bit_length() - 2} (one per resolution from 4 px)",
  )
  check(
    l.min_mask_coverage < l.max_mask_coverage <= 1.0,
    f"loss.max_mask_coverage={l.max_mask_coverage} must be in (min_mask_coverage="
    f"{l.min_mask_coverage}, 1] (1 = off)",
  )
  one_source = not config.data.get("sources")
  check(
    not one_source or config.data.name != "folder" or bool(config.data.path),
    "data.name='folder' needs --config.data.path=/path/to/images",
  )
  check(
    not one_source or config.data.name != "lsun_lmdb" or bool(config.data.path),
    "data.name='lsun_lmdb' needs --config.data.path=/path/to/car_lmdb (the folder holding "
    "data.mdb)",
  )
  check(
    config.eval.data.name != "folder" or bool(config.eval.data.path),
    "eval.data.name='folder' needs --config.eval.data.path=DIR (a folder holding images/ "
    "and masks/)",
  )
  e = config.encoder
  check(
    e.width <= e.max_width,
    f"encoder.width={e.width} is above encoder.max_width={e.max_width}; raise max_width",
  )
  s = config.segmenter
  check(
    config.train.resolution % 2 ** (s.levels - 1) == 0,
    f"segmenter.levels={s.levels} needs train.resolution={config.train.resolution} to be "
    f"divisible by {2 ** (s.levels - 1)}; use fewer levels",
  )
  check(
    s.min_area <= s.max_area,
    f"segmenter.min_area={s.min_area} and max_area={s.max_area} must satisfy "
    "0 <= min_area <= max_area <= 1",
  )
  check(
    mode != "fid" or config.eval.fid_samples >= 2,
    "--mode=fid needs --config.eval.fid_samples=N (N >= 2 generated images)",
  )
  data.validate_data(config, mode)
  if num_devices is not None:
    validate_devices(config, num_devices)


def stage_batch_sizes(config) -> Dict[int, int]:
  """The global batch of every resolution the GAN trains at."""
  t = config.train
  batches = parse_resolution_map(t.batch_sizes, int)
  out, r = {}, t.start_resolution
  while r <= t.resolution:
    out[r] = batches.get(r, t.batch_size)
    r *= 2
  return out


def validate_devices(config, num_devices: int) -> None:
  """Phase 2 (the devices are known): every batch divides by their number."""
  for r, b in stage_batch_sizes(config).items():
    check(
      b > 0 and b % num_devices == 0,
      f"the batch size {b} at {r} px is not divisible by the {num_devices} devices; use a "
      f"multiple of {num_devices} (train.batch_size / train.batch_sizes)",
    )
  for section in ("encoder", "segmenter", "eval"):
    b = config[section].batch_size
    check(
      b > 0 and b % num_devices == 0,
      f"{section}.batch_size={b} must be a positive multiple of the {num_devices} devices",
    )
