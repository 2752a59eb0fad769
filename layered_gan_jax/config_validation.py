"""Checks a config before anything compiles, loads data or touches the workdir.

One validator, two phases:

* :func:`validate_config` (before JAX starts): every field of ``configs/default.py`` by its
  rule in :data:`FIELD_RULES` (type, range, the known names), then the rules that relate
  fields, then the data each mode reads (cheap checks: paths, names, a prepared tfds dataset).
* :func:`validate_devices` (once the device count is known): every batch divides by it.

Every problem raises :class:`~layered_gan_jax.errors.ConfigError` (or the data's
:class:`~layered_gan_jax.errors.DataError`) with one line saying what is wrong and how to fix it. A field added to
``configs/default.py`` needs a rule in :data:`FIELD_RULES` (tests/test_main.py checks it).
"""

import importlib.util
import json
import math
from typing import Any, Callable, Dict, List, Optional

from layered_gan_jax.architecture import RESAMPLING, VARIANTS
from layered_gan_jax.data.config import DATASET_NAMES as DATASETS, MAX_ORG_TO_CROP, sources_problem
from layered_gan_jax.errors import ConfigError, DataError
from layered_gan_jax.schedule import parse_resolution_map

MODES = ("train", "train_encoder", "train_segmenter", "evaluate", "sample", "segment",
         "pipeline", "fid")
ROUTES = ("distilled", "encoder")
ENCODER_TARGETS, ENCODER_NOISE = ("z", "z_per_generator", "w", "w_plus"), ("zero", "fixed")
# The names of layered_gan_jax/baselines.py's BASELINES (that module imports OpenCV).
BASELINE_NAMES = ("full_image", "center_prior", "kmeans", "grabcut")
# Fields of the model that must match a checkpoint being resumed or restored.
MODEL_FIELDS = ("model.variant", "model.channels", "model.style_dim", "model.mapping_layers",
                "model.fused_resolution", "model.mask_logit_offset", "train.resolution")
# Fields added after checkpoints existed: their value when a saved config lacks them.
_FIELD_DEFAULTS = {"model.mask_logit_offset": 0.0}
# Encoder fields that decide its parameters' shapes (a checkpoint restores only with the same).
ENCODER_SHAPE_FIELDS = ("target", "width", "max_width", "blocks_per_stage", "predict_placement")


def _is_pow2(n) -> bool:
  return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


def _check(cond: bool, message: str) -> None:
  if not cond:
    raise ConfigError(message)


# ------------------------------------------------------------------------------ field rules
# A rule takes (dotted name, value) and returns None if the value is good, else what is wrong
# and how to fix it (the message starts with "name=value").


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _int(lo: Optional[int] = None, hi: Optional[int] = None, hint: str = "") -> Callable:
  def rule(name, v):
    if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
      if hi is None and lo == 1:
        want = "> 0 (an integer)"
      elif hi is None:
        want = f"an integer >= {lo}" if lo is not None else "an integer"
      else:
        want = f"an integer in [{lo}, {hi}]"
      return f"{name}={v!r} must be {want}{hint}"
    return None
  return rule


def _float(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False,
           hi_open: bool = False, hint: str = "") -> Callable:
  def rule(name, v):
    ok = _is_number(v)
    if ok and lo is not None:
      ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
      ok = v < hi if hi_open else v <= hi
    if ok:
      return None
    if lo is not None and hi is not None:
      want = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
      want = f"{'>' if lo_open else '>='} {lo:g}"
    elif hi is not None:
      want = f"{'<' if hi_open else '<='} {hi:g}"
    else:
      want = "a finite number"
    return f"{name}={v!r} must be {want}{hint}"
  return rule


def _positive(hint: str = "") -> Callable:
  return _float(0.0, lo_open=True, hint=hint)


def _bool(name, v):
  return None if isinstance(v, bool) else f"{name}={v!r} must be True or False"


def _choice(choices, hint: str = "") -> Callable:
  def rule(name, v):
    if v in choices:
      return None
    return f"{name}={v!r} is unknown; choose one of {', '.join(map(repr, choices))}{hint}"
  return rule


def _str(name, v):
  return None if isinstance(v, str) else f"{name}={v!r} must be a string"


def _optional_str(name, v):
  return None if v is None or isinstance(v, str) else f"{name}={v!r} must be a string or None"


def _optional(rule: Callable) -> Callable:
  return lambda name, v: None if v is None else rule(name, v)


def _resolution(name, v):
  if _is_pow2(v) and 8 <= v <= 1024:
    return None
  return f"{name}={v!r} must be a power of two between 8 and 1024 (e.g. 64)"


def _resolution_map(cast, positive_what: str) -> Callable:
  def rule(name, v):
    try:
      parsed = parse_resolution_map(v, cast)
    except ValueError as e:
      return f"{name}={v!r}: {e}"
    bad = [f"{r}:{x}" for r, x in parsed.items() if not _is_pow2(r) or not x > 0]
    if bad:
      return (f"{name}={v!r}: {', '.join(bad)} needs a power-of-two resolution and a "
              f"{positive_what} > 0")
    return None
  return rule


def _channels(name, v):
  if (isinstance(v, (tuple, list)) and v and all(_is_int(c) and c > 0 for c in v)):
    return None
  shown = tuple(v) if isinstance(v, (tuple, list)) else v
  return f"{name}={shown} must be positive integers, one per resolution"


def _scale_range(name, v):
  sr = tuple(v) if isinstance(v, (tuple, list)) else (v,)
  if len(sr) == 2 and all(_is_number(x) for x in sr) and 0 < sr[0] <= sr[1]:
    return None
  return f"{name}={sr} must be (low, high) with 0 < low <= high"


def _baselines(name, v):
  names = tuple(v) if isinstance(v, (tuple, list)) else (v,)
  unknown = [b for b in names if b not in BASELINE_NAMES]
  if not unknown:
    return None
  return (f"{name} has unknown baseline(s) {', '.join(map(repr, unknown))}; choose among "
          f"{', '.join(BASELINE_NAMES)}")


def _external_segmenter(name, v):
  if not isinstance(v, str):
    return f"{name}={v!r} must be a string 'package.module:function' or ''"
  if not v:
    return None
  module, _, function = v.partition(":")
  if not module or not function.isidentifier():
    return f"{name}={v!r} must be 'package.module:function' (or '' for none)"
  try:
    found = importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    found = False
  if not found:
    return (f"{name}={v!r}: no module {module!r} on the Python path; install it or add its "
            "folder to PYTHONPATH")
  return None


def _synthetic_bg_textures(name, v):
  if v is None or (isinstance(v, (tuple, list)) and v and
                   all(_is_number(w) and w >= 0 for w in v) and sum(v) > 0):
    return None
  return f"{name}={v!r} must be None or a tuple of weights >= 0 (not all 0)"


def _sources(name, v):
  problem = sources_problem(v)
  return None if problem is None else f"{name}{problem}"


# Every field of configs/default.py and its rule.
FIELD_RULES: Dict[str, Callable] = {
    "seed": _int(0),
    # data
    "data.name": _choice(DATASETS),
    "data.path": _str,
    "data.data_dir": _optional_str,
    "data.num_train_examples": _int(1),
    "data.org_to_crop": _float(1.0, MAX_ORG_TO_CROP, hint=" (1.125 reference)"),
    "data.random_crop": _bool,
    "data.cub_test_ids_path": _str,
    "data.cub_images_txt_path": _str,
    "data.on_bad_file": _choice(("skip", "error")),
    "data.on_missing_mask": _choice(("error", "skip")),
    "data.pet_boundary_is_foreground": _bool,
    "data.train_split": lambda n, v: (None if isinstance(v, str) and v.strip() else
                                      f"{n}={v!r} must be a tfds split such as 'train'"),
    "data.download": _bool,
    "data.sources": _sources,
    "data.synthetic_category": _str,
    "data.synthetic_seed": _int(0),
    "data.synthetic_layout.margin": _optional(_float(-0.5, 0.5, lo_open=True, hi_open=True)),
    "data.synthetic_layout.rim_probability": _optional(_float(0.0, 1.0)),
    "data.synthetic_layout.bg_textures": _synthetic_bg_textures,
    "data.num_workers": _int(1, hint=" (threads decoding images)"),
    "data.prefetch": _int(0, hint=" (batches prepared ahead)"),
    # model
    "model.variant": _choice(VARIANTS),
    "model.channels": _channels,
    "model.style_dim": _int(1),
    "model.mapping_layers": _int(1),
    "model.fused_resolution": lambda n, v: (None if _is_pow2(v) and v >= 8 else
                                            f"{n}={v!r} must be a power of two >= 8"),
    "model.mask_logit_offset": _float(),
    "model.head_init_std": _positive(" (1 = reference)"),
    "model.dtype": _choice(("float32", "bfloat16")),
    "model.resampling": _choice(RESAMPLING),
    # perturbations
    "perturb.shift": _float(0.0, 0.5, hint=" (0.125 reference)"),
    "perturb.bg_contrast_jitter": _float(0.0, 1.0, hi_open=True),
    # losses
    "loss.min_mask_coverage": _float(0.0, 1.0, hi_open=True, hint=" (eta)"),
    "loss.max_mask_coverage": _float(0.0, 1.0, lo_open=True, hint=" (1 = off)"),
    "loss.mask_size_weight": _float(0.0),
    "loss.binarization_weight": _float(0.0),
    "loss.gp_weight": _float(0.0),
    "loss.drift_weight": _float(0.0),
    # training (the GAN)
    "train.start_resolution": _resolution,
    "train.resolution": _resolution,
    "train.phase_images": _int(1),
    "train.batch_size": _int(1, hint=" (the global batch)"),
    "train.batch_sizes": _resolution_map(int, "batch size"),
    "train.lr": _positive(),
    "train.lrs": _resolution_map(float, "learning rate"),
    "train.mapping_lr_mult": _positive(),
    "train.critic_lr_mult": _positive(),
    "train.adam_b1": _float(0.0, 1.0, hi_open=True),
    "train.adam_b2": _float(0.0, 1.0, hi_open=True),
    "train.adam_eps": _positive(),
    "train.ema_decay": _float(0.0, 1.0, hint=" (0.999 reference)"),
    "train.ema_rampup": _bool,
    "train.style_mixing_prob": _float(0.0, 1.0),
    "train.max_steps": _int(1),
    "train.log_every_steps": _int(1),
    "train.sample_every_steps": _int(1),
    "train.checkpoint_every_steps": _int(1),
    "train.keep_checkpoints": _int(1, hint=" (checkpoints kept)"),
    "train.num_samples": _int(1),
    "train.remat_penalty": _bool,
    "train.steps_per_call": _int(1), "train.device_prefetch": _int(0, hint=" (batches)"),
    "train.collapse_patience": _int(1, hint=" (sample steps)"),
    "train.stop_on_collapse": _bool,
    "train.fid_every_images": _int(0, hint=" (0 = off)"),
    "train.fid_samples": _int(2),
    # encoders
    "encoder.target": _choice(ENCODER_TARGETS),
    "encoder.noise": _choice(ENCODER_NOISE),
    "encoder.width": _int(1),
    "encoder.max_width": _int(1),
    "encoder.blocks_per_stage": _int(1),
    "encoder.feature_weight": _float(0.0),
    "encoder.latent_weight": _float(0.0),
    "encoder.predict_placement": _bool,
    "encoder.refine_steps": _int(0),
    "encoder.refine_lr": _positive(),
    "encoder.batch_size": _int(1),
    "encoder.lr": _positive(),
    "encoder.max_steps": _int(1),
    "encoder.log_every_steps": _int(1),
    "encoder.checkpoint_every_steps": _int(1),
    # distilled segmenter
    "segmenter.width": _int(1),
    "segmenter.levels": _int(1),
    "segmenter.batch_size": _int(1),
    "segmenter.lr": _positive(),
    "segmenter.max_steps": _int(1),
    "segmenter.dice_weight": _float(0.0),
    "segmenter.recompose": _bool,
    "segmenter.scale_range": _scale_range,
    "segmenter.translate": _bool,
    "segmenter.max_cut": _float(0.0, 0.5, hi_open=True),
    "segmenter.flip_prob": _float(0.0, 1.0),
    "segmenter.swap_background_prob": _float(0.0, 1.0),
    "segmenter.color_jitter": _float(0.0, 1.0, hi_open=True),
    "segmenter.min_area": _float(0.0, 1.0),
    "segmenter.max_area": _float(0.0, 1.0),
    "segmenter.max_uncertainty": _float(0.0, 0.5, hint=" (0.5 = no filter)"),
    "segmenter.validation_size": _int(1),
    "segmenter.log_every_steps": _int(1),
    "segmenter.checkpoint_every_steps": _int(1),
    # segmentation route
    "segment.route": _choice(ROUTES),
    "segment.mirror_average": _bool,
    # evaluation
    "eval.data.name": _choice(("",) + DATASETS, " ('' = the training dataset's test split)"),
    "eval.data.path": _str,
    "eval.data.sources": _sources,
    "eval.max_examples": _int(0, hint=" (0 = all)"),
    "eval.batch_size": _int(1),
    "eval.baselines": _baselines,
    "eval.num_generated": _int(1),
    "eval.external_segmenter": _external_segmenter,
    "eval.fid_samples": _int(0, hint=" (0 = off)"),
    "eval.fid_real_images": _int(2),
    "eval.fid_weights": _str,
    # runtime
    "runtime.xla_cpu_kernels": _choice(("xla", "ynn")),
    "runtime.lease_stale_after_s": _float(1.0, hint=" (seconds)"),
}


def leaves(tree, prefix: str = "") -> Dict[str, Any]:
  """``{'train.lr': 0.001, ...}``: the leaves of a (nested) ConfigDict or dict."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if hasattr(value, "items") and not isinstance(value, (str, bytes)):
      out.update(leaves(value, name + "."))
    else:
      out[name] = value
  return out


def _lookup(config, dotted: str):
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      return _MISSING
  return node


_MISSING = object()


def validate_fields(config) -> None:
  """Each field present in ``config`` against its rule in :data:`FIELD_RULES`."""
  for name, rule in FIELD_RULES.items():
    value = _lookup(config, name)
    if value is _MISSING:
      continue
    if isinstance(value, list):
      value = tuple(value)
    problem = rule(name, value)
    _check(problem is None, problem or "")


def validate_config(config, mode: str = "train", num_devices: Optional[int] = None) -> None:
  """Phase 1 (before JAX starts): every field, the rules between fields, the data ``mode``
  reads. With ``num_devices``, phase 2 (:func:`validate_devices`) too."""
  _check(mode in MODES, f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
  validate_fields(config)
  t, m, l = config.train, config.model, config.loss
  _check(t.start_resolution <= t.resolution,
         f"train.start_resolution={t.start_resolution} is above train.resolution="
         f"{t.resolution}; set start_resolution <= resolution")
  _check(len(m.channels) >= t.resolution.bit_length() - 2,
         f"model.channels has {len(m.channels)} entries but train.resolution={t.resolution} "
         f"needs {t.resolution.bit_length() - 2} (one per resolution from 4 px)")
  _check(l.min_mask_coverage < l.max_mask_coverage <= 1.0,
         f"loss.max_mask_coverage={l.max_mask_coverage} must be in (min_mask_coverage="
         f"{l.min_mask_coverage}, 1] (1 = off)")
  one_source = not config.data.get("sources")
  _check(not one_source or config.data.name != "folder" or bool(config.data.path),
         "data.name='folder' needs --config.data.path=/path/to/images")
  _check(not one_source or config.data.name != "lsun_lmdb" or bool(config.data.path),
         "data.name='lsun_lmdb' needs --config.data.path=/path/to/car_lmdb (the folder holding "
         "data.mdb)")
  _check(config.eval.data.name != "folder" or bool(config.eval.data.path),
         "eval.data.name='folder' needs --config.eval.data.path=DIR (a folder holding images/ "
         "and masks/)")
  e = config.encoder
  _check(e.width <= e.max_width,
         f"encoder.width={e.width} is above encoder.max_width={e.max_width}; raise max_width")
  s = config.segmenter
  _check(config.train.resolution % 2 ** (s.levels - 1) == 0,
         f"segmenter.levels={s.levels} needs train.resolution={config.train.resolution} to be "
         f"divisible by {2 ** (s.levels - 1)}; use fewer levels")
  _check(s.min_area <= s.max_area,
         f"segmenter.min_area={s.min_area} and max_area={s.max_area} must satisfy "
         "0 <= min_area <= max_area <= 1")
  _check(mode != "fid" or config.eval.fid_samples >= 2,
         "--mode=fid needs --config.eval.fid_samples=N (N >= 2 generated images)")
  _validate_data(config, mode)
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
    _check(b > 0 and b % num_devices == 0,
           f"the batch size {b} at {r} px is not divisible by the {num_devices} devices; use a "
           f"multiple of {num_devices} (train.batch_size / train.batch_sizes)")
  for section in ("encoder", "segmenter", "eval"):
    b = config[section].batch_size
    _check(b > 0 and b % num_devices == 0,
           f"{section}.batch_size={b} must be a positive multiple of the {num_devices} devices")


def _validate_data(config, mode: str) -> None:
  """The data the mode reads: paths exist, names and options are valid (cheap checks only)."""
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
  checks = []
  if mode in ("train", "train_encoder", "pipeline"):
    checks.append(("data", config.data))
  if mode in ("evaluate", "pipeline"):
    where = ("eval.data" if config.eval.data.name or config.eval.data.get("sources") else
             "eval.data (unset: the training data's test split)")
    checks.append((where, data_config.eval_data_config(config)))
  for where, data in checks:
    try:
      data_config.validate_data_config(data)
      if where.startswith("eval.data"):
        data_config.check_eval_data(data, where)
      for j, source in enumerate(data_config.data_sources(data)):
        try:
          tfds_sources.check_tfds_prepared(source.cfg)
        except DataError as e:
          if not data.get("sources"):
            raise
          raise DataError(f"sources[{j}] ({source.label}): {e}") from None
    except ValueError as e:
      if str(e).startswith("sources["):  # One source of several: say which field.
        text = f"{where}.{e}" if " " not in where else f"{where}: {e}"
        raise (DataError if isinstance(e, DataError) else ConfigError)(text) from None
      if isinstance(e, DataError):
        raise
      raise ConfigError(f"{where}: {e}") from None


def _get(tree: Dict[str, Any], dotted: str):
  for part in dotted.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return list(tree) if isinstance(tree, (list, tuple)) else tree


def check_saved_model(saved: Dict[str, Any], config, directory, step: int) -> None:
  """Refuses the GAN checkpoint ``step`` of ``directory`` (its config ``saved``) if its model
  differs from ``config``'s."""
  diffs = model_differences(saved, json.loads(config.to_json_best_effort()))
  _check(not diffs, f"the checkpoint in {directory} (step {step}) holds another model: "
         + "; ".join(diffs) + ". Use the config it was trained with, or another --workdir")


def check_saved_encoder(saved: Dict[str, Any], config, directory, step: int) -> None:
  """Refuses the encoder checkpoint ``step`` of ``directory`` (its config ``saved``) if its
  parameters' shapes follow other ``encoder`` settings than ``config``'s."""
  saved_enc = saved.get("encoder", {})
  diffs = [f"encoder.{k}: checkpoint {saved_enc.get(k, False)!r} vs config "
           f"{config.encoder[k]!r}" for k in ENCODER_SHAPE_FIELDS
           if saved_enc.get(k, False) != config.encoder[k]]
  _check(not diffs, f"the encoder checkpoint in {directory} (step {step}) holds another "
         "encoder: " + "; ".join(diffs) + ". Use the settings it was trained with")


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
