"""Checks a config before anything compiles, loads data or touches the workdir.

Every problem raises :class:`ConfigError` with one line saying what is wrong and how to fix it.
"""

from typing import Any, Dict, List

from layered_gan_jax.architecture import RESAMPLING, VARIANTS
from layered_gan_jax.data.config import DATASET_NAMES as DATASETS
from layered_gan_jax.data.config import MAX_ORG_TO_CROP
from layered_gan_jax.schedule import parse_resolution_map

MODES = ("train", "train_encoder", "train_segmenter", "evaluate", "sample", "segment",
         "pipeline")
ROUTES = ("distilled", "encoder")
ENCODER_TARGETS = ("z", "z_per_generator", "w", "w_plus")
ENCODER_NOISE = ("zero", "fixed")
# Fields of the model that must match a checkpoint being resumed or restored.
MODEL_FIELDS = ("model.variant", "model.channels", "model.style_dim", "model.mapping_layers",
                "model.fused_resolution", "model.mask_logit_offset", "train.resolution")
# Fields added after checkpoints existed: their value when a saved config lacks them.
_FIELD_DEFAULTS = {"model.mask_logit_offset": 0.0}


class ConfigError(ValueError):
  """A user-fixable configuration problem."""


def _is_pow2(n) -> bool:
  return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def _check(cond: bool, message: str) -> None:
  if not cond:
    raise ConfigError(message)


def validate_config(config, mode: str = "train", num_devices: int = 1) -> None:
  _check(mode in MODES, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
  t, m, p, l = config.train, config.model, config.perturb, config.loss
  for name in ("start_resolution", "resolution"):
    r = t[name]
    _check(_is_pow2(r) and 8 <= r <= 1024,
           f"train.{name}={r!r} must be a power of two between 8 and 1024 (e.g. 64)")
  _check(t.start_resolution <= t.resolution,
         f"train.start_resolution={t.start_resolution} is above train.resolution="
         f"{t.resolution}; set start_resolution <= resolution")
  _check(all(isinstance(c, int) and c > 0 for c in m.channels),
         f"model.channels={tuple(m.channels)} must be positive integers, one per resolution")
  _check(len(m.channels) >= t.resolution.bit_length() - 2,
         f"model.channels has {len(m.channels)} entries but train.resolution={t.resolution} "
         f"needs {t.resolution.bit_length() - 2} (one per resolution from 4 px)")
  for name in ("style_dim", "mapping_layers"):
    _check(isinstance(m[name], int) and m[name] > 0, f"model.{name}={m[name]!r} must be > 0")
  _check(m.variant in VARIANTS, f"model.variant={m.variant!r}; choose one of {VARIANTS}")
  _check(m.head_init_std > 0, f"model.head_init_std={m.head_init_std} must be > 0 (1 = reference)")
  _check(m.dtype in ("float32", "bfloat16"), f"model.dtype={m.dtype!r}; use float32 or bfloat16")
  _check(m.get("resampling", "efficient") in RESAMPLING,
         f"model.resampling={m.get('resampling')!r}; use one of {', '.join(RESAMPLING)}")
  _check(0.0 <= p.shift <= 0.5, f"perturb.shift={p.shift} must be in [0, 0.5] (0.125 reference)")
  _check(0.0 <= p.bg_contrast_jitter < 1.0,
         f"perturb.bg_contrast_jitter={p.bg_contrast_jitter} must be in [0, 1)")
  _check(0.0 <= l.min_mask_coverage < 1.0,
         f"loss.min_mask_coverage (eta)={l.min_mask_coverage} must be in [0, 1)")
  _check(l.min_mask_coverage < l.max_mask_coverage <= 1.0,
         f"loss.max_mask_coverage={l.max_mask_coverage} must be in (min_mask_coverage="
         f"{l.min_mask_coverage}, 1] (1 = off)")
  for name in ("mask_size_weight", "binarization_weight", "gp_weight", "drift_weight"):
    _check(l[name] >= 0, f"loss.{name}={l[name]} must be >= 0")
  _check(config.runtime.xla_cpu_kernels in ("xla", "ynn"),
         f"runtime.xla_cpu_kernels={config.runtime.xla_cpu_kernels!r}; use 'xla' or 'ynn'")
  _check(config.data.name in DATASETS,
         f"data.name={config.data.name!r} is unknown; choose one of {', '.join(DATASETS)}")
  _check(config.data.name != "folder" or bool(config.data.path),
         "data.name='folder' needs --config.data.path=/path/to/images")
  _check(config.data.name != "lsun_lmdb" or bool(config.data.path),
         "data.name='lsun_lmdb' needs --config.data.path=/path/to/car_lmdb (the folder holding "
         "data.mdb)")
  _check(1.0 <= config.data.org_to_crop <= MAX_ORG_TO_CROP,
         f"data.org_to_crop={config.data.org_to_crop} must be in [1, {MAX_ORG_TO_CROP:g}] "
         "(1.125 reference)")
  try:
    batches = parse_resolution_map(t.batch_sizes, int)
    parse_resolution_map(t.lrs, float)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  r = t.start_resolution
  while r <= t.resolution:
    b = batches.get(r, t.batch_size)
    _check(b > 0 and b % num_devices == 0,
           f"the batch size {b} at {r} px is not divisible by the {num_devices} devices; use a "
           f"multiple of {num_devices} (train.batch_size / train.batch_sizes)")
    r *= 2
  _check(t.max_steps > 0, f"train.max_steps={t.max_steps} must be > 0")
  _check(t.phase_images > 0, f"train.phase_images={t.phase_images} must be > 0")
  for name in ("log_every_steps", "checkpoint_every_steps", "sample_every_steps"):
    _check(t[name] > 0, f"train.{name}={t[name]} must be > 0")
  _check(0.0 <= t.style_mixing_prob <= 1.0, "train.style_mixing_prob must be in [0, 1]")
  _check(isinstance(t.collapse_patience, int) and t.collapse_patience >= 1,
         f"train.collapse_patience={t.collapse_patience!r} must be an int >= 1 (sample steps)")
  e = config.encoder
  _check(e.target in ENCODER_TARGETS, f"encoder.target={e.target!r}; choose one of "
         f"{ENCODER_TARGETS}")
  _check(e.noise in ENCODER_NOISE, f"encoder.noise={e.noise!r}; choose one of {ENCODER_NOISE}")
  _check(e.width > 0 and e.max_width > 0, "encoder.width and encoder.max_width must be > 0")
  _check(e.batch_size > 0 and e.batch_size % num_devices == 0,
         f"encoder.batch_size={e.batch_size} must be a positive multiple of the {num_devices} "
         "devices")
  _validate_segmenter(config, num_devices)
  _check(isinstance(e.refine_steps, int) and e.refine_steps >= 0 and e.refine_lr > 0,
         f"encoder.refine_steps={e.refine_steps!r} must be an int >= 0 and encoder.refine_lr="
         f"{e.refine_lr} > 0")
  _check(config.eval.batch_size > 0 and config.eval.batch_size % num_devices == 0,
         f"eval.batch_size={config.eval.batch_size} must be a positive multiple of the "
         f"{num_devices} devices")
  eval_name = config.eval.data.name
  _check(not eval_name or eval_name in DATASETS,
         f"eval.data.name={eval_name!r} is unknown; choose one of {', '.join(DATASETS)}")
  _validate_data(config, mode)


def _validate_segmenter(config, num_devices: int) -> None:
  s = config.segmenter
  _check(s.width > 0 and s.levels >= 1, f"segmenter.width={s.width} and segmenter.levels="
         f"{s.levels} must be positive")
  _check(config.train.resolution % 2 ** (s.levels - 1) == 0,
         f"segmenter.levels={s.levels} needs train.resolution={config.train.resolution} to be "
         f"divisible by {2 ** (s.levels - 1)}; use fewer levels")
  _check(s.batch_size > 0 and s.batch_size % num_devices == 0,
         f"segmenter.batch_size={s.batch_size} must be a positive multiple of the "
         f"{num_devices} devices")
  _check(s.lr > 0 and s.max_steps > 0, "segmenter.lr and segmenter.max_steps must be > 0")
  for name in ("log_every_steps", "checkpoint_every_steps", "validation_size"):
    _check(s[name] > 0, f"segmenter.{name}={s[name]} must be > 0")
  sr = tuple(s.scale_range)
  _check(len(sr) == 2 and 0 < sr[0] <= sr[1],
         f"segmenter.scale_range={sr} must be (low, high) with 0 < low <= high")
  _check(0.0 <= s.max_cut < 0.5, f"segmenter.max_cut={s.max_cut} must be in [0, 0.5)")
  for name in ("flip_prob", "swap_background_prob"):
    _check(0.0 <= s[name] <= 1.0, f"segmenter.{name}={s[name]} must be in [0, 1]")
  _check(0.0 <= s.color_jitter < 1.0, f"segmenter.color_jitter={s.color_jitter} must be in "
         "[0, 1)")
  _check(0.0 <= s.min_area <= s.max_area <= 1.0,
         f"segmenter.min_area={s.min_area} and max_area={s.max_area} must satisfy "
         "0 <= min_area <= max_area <= 1")
  _check(0.0 <= s.max_uncertainty <= 0.5,
         f"segmenter.max_uncertainty={s.max_uncertainty} must be in [0, 0.5] (0.5 = no filter)")
  _check(config.segment.route in ROUTES,
         f"segment.route={config.segment.route!r}; choose one of {', '.join(ROUTES)}")


def _validate_data(config, mode: str) -> None:
  """The data the mode reads: paths exist, names and options are valid (cheap checks only)."""
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.image_io import DataError  # pylint: disable=g-import-not-at-top
  checks = []
  if mode in ("train", "train_encoder", "pipeline"):
    checks.append(("data", config.data))
  if mode in ("evaluate", "pipeline") and config.eval.data.name:
    checks.append(("eval.data", data_config.eval_data_config(config)))
  for where, data in checks:
    try:
      data_config.validate_data_config(data)
      tfds_sources.check_tfds_prepared(data)
    except DataError:
      raise
    except ValueError as e:
      raise ConfigError(f"{where}: {e}") from None


def _get(tree: Dict[str, Any], dotted: str):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return list(tree) if isinstance(tree, (list, tuple)) else tree


def model_differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
  """The model fields that differ between a checkpoint's config and the current one."""
  diffs = []
  for field in MODEL_FIELDS:
    a, b = _get(saved, field), _get(current, field)
    a = _FIELD_DEFAULTS.get(field) if a is None else a
    b = _FIELD_DEFAULTS.get(field) if b is None else b
    if a != b:
      diffs.append(f"{field}: checkpoint {a!r} vs config {b!r}")
  return diffs
