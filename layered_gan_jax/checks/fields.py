"""The rule of every config field: its type, its range, the names it may take.

A rule is a callable ``rule(dotted_name, value)`` that returns None for a good value, else one
line saying what is wrong and how to fix it (it starts with ``name=value``). The bounded rules
are data (:class:`Int`, :class:`Float`, :class:`PowerOfTwo`, :class:`Choice`, and
:class:`Maybe` around one of them): their bounds can be read, and tests derive their bad values
from them (tests/test_ranges.py pins each range). A field added to ``configs/default.py``
needs a rule in :data:`FIELD_RULES` (tests/test_main.py checks it) and a wiring test
(tests/test_wiring.py). Imports no JAX.
"""

import dataclasses
import importlib.util
import math
from typing import Any, Callable, Dict, Optional, Tuple

from layered_gan_jax import names
from layered_gan_jax.data.config import DATASET_NAMES as DATASETS
from layered_gan_jax.data.config import MAX_ORG_TO_CROP, sources_problem
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.nets.architecture import RESAMPLING, VARIANTS, parse_resolution_map

ENCODER_TARGETS, ENCODER_NOISE = ("z", "z_per_generator", "w", "w_plus"), ("zero", "fixed")


def _is_pow2(n) -> bool:
  return isinstance(n, int) and not isinstance(n, bool) and n > 0 and n & (n - 1) == 0


def check(cond: bool, message: str) -> None:
  """Raises ``ConfigError(message)`` unless ``cond``."""
  if not cond:
    raise ConfigError(message)


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class Int:
  """An integer in [lo, hi] (a bound of None: unbounded on that side)."""

  lo: Optional[int] = None
  hi: Optional[int] = None
  hint: str = ""

  def __call__(self, name, v):
    lo, hi = self.lo, self.hi
    if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
      if hi is None and lo == 1:
        want = "> 0 (an integer)"
      elif hi is None:
        want = f"an integer >= {lo}" if lo is not None else "an integer"
      else:
        want = f"an integer in [{lo}, {hi}]"
      return f"{name}={v!r} must be {want}{self.hint}"
    return None


@dataclasses.dataclass(frozen=True)
class Float:
  """A finite number between lo and hi, each bound closed unless its ``*_open`` is set."""

  lo: Optional[float] = None
  hi: Optional[float] = None
  lo_open: bool = False
  hi_open: bool = False
  hint: str = ""

  def __call__(self, name, v):
    lo, hi, lo_open, hi_open = self.lo, self.hi, self.lo_open, self.hi_open
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
    return f"{name}={v!r} must be {want}{self.hint}"


def positive(hint: str = "") -> Float:
  return Float(0.0, lo_open=True, hint=hint)


@dataclasses.dataclass(frozen=True)
class PowerOfTwo:
  """A power of two in [lo, hi] (hi None: unbounded)."""

  lo: int
  hi: Optional[int] = None
  hint: str = ""

  def __call__(self, name, v):
    if _is_pow2(v) and v >= self.lo and (self.hi is None or v <= self.hi):
      return None
    want = f"between {self.lo} and {self.hi}" if self.hi is not None else f">= {self.lo}"
    return f"{name}={v!r} must be a power of two {want}{self.hint}"


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of ``choices``."""

  choices: Tuple[Any, ...]
  hint: str = ""

  def __call__(self, name, v):
    if v in self.choices:
      return None
    return f"{name}={v!r} is unknown; choose one of {', '.join(map(repr, self.choices))}{self.hint}"


@dataclasses.dataclass(frozen=True)
class Maybe:
  """None, or a value ``rule`` accepts."""

  rule: Callable

  def __call__(self, name, v):
    return None if v is None else self.rule(name, v)


def _bool(name, v):
  return None if isinstance(v, bool) else f"{name}={v!r} must be True or False"


def _str(name, v):
  return None if isinstance(v, str) else f"{name}={v!r} must be a string"


def _optional_str(name, v):
  return None if v is None or isinstance(v, str) else f"{name}={v!r} must be a string or None"


def _resolution_map(cast, positive_what: str) -> Callable:
  def rule(name, v):
    try:
      parsed = parse_resolution_map(v, cast)
    except ValueError as e:
      return f"{name}={v!r}: {e}"
    bad = [f"{r}:{x}" for r, x in parsed.items() if not _is_pow2(r) or not x > 0]
    if bad:
      return (
        f"{name}={v!r}: {', '.join(bad)} needs a power-of-two resolution and a {positive_what} > 0"
      )
    return None

  return rule


def _channels(name, v):
  if isinstance(v, (tuple, list)) and v and all(_is_int(c) and c > 0 for c in v):
    return None
  shown = tuple(v) if isinstance(v, (tuple, list)) else v
  return f"{name}={shown} must be positive integers, one per resolution"


def _scale_range(name, v):
  sr = tuple(v) if isinstance(v, (tuple, list)) else (v,)
  if len(sr) == 2 and all(_is_number(x) for x in sr) and 0 < sr[0] <= sr[1]:
    return None
  return f"{name}={sr} must be (low, high) with 0 < low <= high"


def _baselines(name, v):
  given = tuple(v) if isinstance(v, (tuple, list)) else (v,)
  unknown = [b for b in given if b not in names.BASELINES]
  if not unknown:
    return None
  return (
    f"{name} has unknown baseline(s) {', '.join(map(repr, unknown))}; choose among "
    f"{', '.join(names.BASELINES)}"
  )


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
    return (
      f"{name}={v!r}: no module {module!r} on the Python path; install it or add its "
      "folder to PYTHONPATH"
    )
  return None


def _synthetic_bg_textures(name, v):
  if v is None or (
    isinstance(v, (tuple, list)) and v and all(_is_number(w) and w >= 0 for w in v) and sum(v) > 0
  ):
    return None
  return f"{name}={v!r} must be None or a tuple of weights >= 0 (not all 0)"


def _sources(name, v):
  problem = sources_problem(v)
  return None if problem is None else f"{name}{problem}"


# Every field of configs/default.py and its rule.
FIELD_RULES: Dict[str, Callable] = {
  "seed": Int(0),
  # data
  "data.name": Choice(DATASETS),
  "data.path": _str,
  "data.data_dir": _optional_str,
  "data.num_train_examples": Int(1),
  "data.org_to_crop": Float(1.0, MAX_ORG_TO_CROP, hint=" (1.125 reference)"),
  "data.random_crop": _bool,
  "data.cub_test_ids_path": _str,
  "data.cub_images_txt_path": _str,
  "data.on_bad_file": Choice(("skip", "error")),
  "data.on_missing_mask": Choice(("error", "skip")),
  "data.pet_boundary_is_foreground": _bool,
  "data.train_split": lambda n, v: (
    None if isinstance(v, str) and v.strip() else f"{n}={v!r} must be a tfds split such as 'train'"
  ),
  "data.download": _bool,
  "data.sources": _sources,
  "data.synthetic_category": _str,
  "data.synthetic_seed": Int(0),
  "data.synthetic_layout.margin": Maybe(Float(-0.5, 0.5, lo_open=True, hi_open=True)),
  "data.synthetic_layout.rim_probability": Maybe(Float(0.0, 1.0)),
  "data.synthetic_layout.bg_textures": _synthetic_bg_textures,
  "data.num_workers": Int(1, hint=" (threads decoding images)"),
  "data.prefetch": Int(0, hint=" (batches prepared ahead)"),
  # model
  "model.variant": Choice(VARIANTS),
  "model.channels": _channels,
  "model.style_dim": Int(1),
  "model.mapping_layers": Int(1),
  "model.fused_resolution": PowerOfTwo(8),
  "model.mask_logit_offset": Float(),
  "model.head_init_std": positive(" (1 = reference)"),
  "model.dtype": Choice(("float32", "bfloat16")),
  "model.resampling": Choice(RESAMPLING),
  # perturbations
  "perturb.shift": Float(0.0, 0.5, hint=" (0.125 reference)"),
  "perturb.bg_contrast_jitter": Float(0.0, 1.0, hi_open=True),
  # losses
  "loss.min_mask_coverage": Float(0.0, 1.0, hi_open=True, hint=" (eta)"),
  "loss.max_mask_coverage": Float(0.0, 1.0, lo_open=True, hint=" (1 = off)"),
  "loss.mask_size_weight": Float(0.0),
  "loss.binarization_weight": Float(0.0),
  "loss.gp_weight": Float(0.0),
  "loss.drift_weight": Float(0.0),
  # training (the GAN)
  "train.start_resolution": PowerOfTwo(8, 1024, " (e.g. 64)"),
  "train.resolution": PowerOfTwo(8, 1024, " (e.g. 64)"),
  "train.phase_images": Int(1),
  "train.batch_size": Int(1, hint=" (the global batch)"),
  "train.batch_sizes": _resolution_map(int, "batch size"),
  "train.lr": positive(),
  "train.lrs": _resolution_map(float, "learning rate"),
  "train.mapping_lr_mult": positive(),
  "train.critic_lr_mult": positive(),
  "train.adam_b1": Float(0.0, 1.0, hi_open=True),
  "train.adam_b2": Float(0.0, 1.0, hi_open=True),
  "train.adam_eps": positive(),
  "train.ema_decay": Float(0.0, 1.0, hint=" (0.999 reference)"),
  "train.ema_rampup": _bool,
  "train.style_mixing_prob": Float(0.0, 1.0),
  "train.max_steps": Int(1),
  "train.log_every_steps": Int(1),
  "train.sample_every_steps": Int(1),
  "train.checkpoint_every_steps": Int(1),
  "train.keep_checkpoints": Int(1, hint=" (checkpoints kept)"),
  "train.num_samples": Int(1),
  "train.remat_penalty": _bool,
  "train.steps_per_call": Int(1),
  "train.device_prefetch": Int(0, hint=" (batches)"),
  "train.collapse_patience": Int(1, hint=" (sample steps)"),
  "train.stop_on_collapse": _bool,
  "train.fid_every_images": Int(0, hint=" (0 = off)"),
  "train.fid_samples": Int(2),
  # encoders
  "encoder.target": Choice(ENCODER_TARGETS),
  "encoder.noise": Choice(ENCODER_NOISE),
  "encoder.width": Int(1),
  "encoder.max_width": Int(1),
  "encoder.blocks_per_stage": Int(1),
  "encoder.feature_weight": Float(0.0),
  "encoder.latent_weight": Float(0.0),
  "encoder.predict_placement": _bool,
  "encoder.refine_steps": Int(0),
  "encoder.refine_lr": positive(),
  "encoder.batch_size": Int(1),
  "encoder.lr": positive(),
  "encoder.max_steps": Int(1),
  "encoder.log_every_steps": Int(1),
  "encoder.checkpoint_every_steps": Int(1),
  # distilled segmenter
  "segmenter.width": Int(1),
  "segmenter.levels": Int(1),
  "segmenter.batch_size": Int(1),
  "segmenter.lr": positive(),
  "segmenter.max_steps": Int(1),
  "segmenter.dice_weight": Float(0.0),
  "segmenter.recompose": _bool,
  "segmenter.scale_range": _scale_range,
  "segmenter.translate": _bool,
  "segmenter.max_cut": Float(0.0, 0.5, hi_open=True),
  "segmenter.flip_prob": Float(0.0, 1.0),
  "segmenter.swap_background_prob": Float(0.0, 1.0),
  "segmenter.color_jitter": Float(0.0, 1.0, hi_open=True),
  "segmenter.min_area": Float(0.0, 1.0),
  "segmenter.max_area": Float(0.0, 1.0),
  "segmenter.max_uncertainty": Float(0.0, 0.5, hint=" (0.5 = no filter)"),
  "segmenter.validation_size": Int(1),
  "segmenter.log_every_steps": Int(1),
  "segmenter.checkpoint_every_steps": Int(1),
  # segmentation route
  "segment.route": Choice(names.ROUTES),
  "segment.mirror_average": _bool,
  # evaluation
  "eval.data.name": Choice(("",) + DATASETS, " ('' = the training dataset's test split)"),
  "eval.data.path": _str,
  "eval.data.sources": _sources,
  "eval.max_examples": Int(0, hint=" (0 = all)"),
  "eval.batch_size": Int(1),
  "eval.baselines": _baselines,
  "eval.num_generated": Int(1),
  "eval.external_segmenter": _external_segmenter,
  "eval.fid_samples": Int(0, hint=" (0 = off)"),
  "eval.fid_real_images": Int(2),
  "eval.fid_weights": _str,
  # runtime
  "runtime.xla_cpu_kernels": Choice(("xla", "ynn")),
  "runtime.lease_stale_after_s": Float(1.0, hint=" (seconds)"),
}


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
    check(problem is None, problem or "")
