"""The range of every bounded config field, pinned, and refused just past each bound.

``RANGES`` is the specification: a rule whose bound moves (or disappears) fails
``test_the_rules_have_the_pinned_ranges`` naming its field; the refusal test derives its bad
values from the rules' own bounds, so every bound is also enforced by ``validate_config`` in one
line that names the field.
"""

import math

import numpy as np
import pytest

from configs import tiny
from layered_gan_jax.checks import fields, validate
from layered_gan_jax.errors import ConfigError

INF = math.inf

# field: (kind, interval); kind 'int', 'float' or 'pow2'; '[' / ']' closed, '(' / ')' open.
RANGES = {
  "seed": ("int", "[0, inf)"),
  "data.num_train_examples": ("int", "[1, inf)"),
  "data.org_to_crop": ("float", "[1, 4]"),
  "data.synthetic_seed": ("int", "[0, inf)"),
  "data.synthetic_layout.margin": ("float", "(-0.5, 0.5)"),
  "data.synthetic_layout.rim_probability": ("float", "[0, 1]"),
  "data.num_workers": ("int", "[1, inf)"),
  "data.prefetch": ("int", "[0, inf)"),
  "model.style_dim": ("int", "[1, inf)"),
  "model.mapping_layers": ("int", "[1, inf)"),
  "model.fused_resolution": ("pow2", "[8, inf)"),
  "model.mask_logit_offset": ("float", "(-inf, inf)"),
  "model.head_init_std": ("float", "(0, inf)"),
  "perturb.shift": ("float", "[0, 0.5]"),
  "perturb.bg_contrast_jitter": ("float", "[0, 1)"),
  "loss.min_mask_coverage": ("float", "[0, 1)"),
  "loss.max_mask_coverage": ("float", "(0, 1]"),
  "loss.mask_size_weight": ("float", "[0, inf)"),
  "loss.binarization_weight": ("float", "[0, inf)"),
  "loss.gp_weight": ("float", "[0, inf)"),
  "loss.drift_weight": ("float", "[0, inf)"),
  "train.start_resolution": ("pow2", "[8, 1024]"),
  "train.resolution": ("pow2", "[8, 1024]"),
  "train.phase_images": ("int", "[1, inf)"),
  "train.batch_size": ("int", "[1, inf)"),
  "train.lr": ("float", "(0, inf)"),
  "train.mapping_lr_mult": ("float", "(0, inf)"),
  "train.critic_lr_mult": ("float", "(0, inf)"),
  "train.adam_b1": ("float", "[0, 1)"),
  "train.adam_b2": ("float", "[0, 1)"),
  "train.adam_eps": ("float", "(0, inf)"),
  "train.ema_decay": ("float", "[0, 1]"),
  "train.style_mixing_prob": ("float", "[0, 1]"),
  "train.max_steps": ("int", "[1, inf)"),
  "train.log_every_steps": ("int", "[1, inf)"),
  "train.sample_every_steps": ("int", "[1, inf)"),
  "train.checkpoint_every_steps": ("int", "[1, inf)"),
  "train.keep_checkpoints": ("int", "[1, inf)"),
  "train.num_samples": ("int", "[1, inf)"),
  "train.steps_per_call": ("int", "[1, inf)"),
  "train.device_prefetch": ("int", "[0, inf)"),
  "train.collapse_patience": ("int", "[1, inf)"),
  "train.fid_every_images": ("int", "[0, inf)"),
  "train.fid_samples": ("int", "[2, inf)"),
  "encoder.width": ("int", "[1, inf)"),
  "encoder.max_width": ("int", "[1, inf)"),
  "encoder.blocks_per_stage": ("int", "[1, inf)"),
  "encoder.feature_weight": ("float", "[0, inf)"),
  "encoder.latent_weight": ("float", "[0, inf)"),
  "encoder.refine_steps": ("int", "[0, inf)"),
  "encoder.refine_lr": ("float", "(0, inf)"),
  "encoder.batch_size": ("int", "[1, inf)"),
  "encoder.lr": ("float", "(0, inf)"),
  "encoder.max_steps": ("int", "[1, inf)"),
  "encoder.log_every_steps": ("int", "[1, inf)"),
  "encoder.checkpoint_every_steps": ("int", "[1, inf)"),
  "segmenter.width": ("int", "[1, inf)"),
  "segmenter.levels": ("int", "[1, inf)"),
  "segmenter.batch_size": ("int", "[1, inf)"),
  "segmenter.lr": ("float", "(0, inf)"),
  "segmenter.max_steps": ("int", "[1, inf)"),
  "segmenter.dice_weight": ("float", "[0, inf)"),
  "segmenter.max_cut": ("float", "[0, 0.5)"),
  "segmenter.flip_prob": ("float", "[0, 1]"),
  "segmenter.swap_background_prob": ("float", "[0, 1]"),
  "segmenter.color_jitter": ("float", "[0, 1)"),
  "segmenter.min_area": ("float", "[0, 1]"),
  "segmenter.max_area": ("float", "[0, 1]"),
  "segmenter.max_uncertainty": ("float", "[0, 0.5]"),
  "segmenter.validation_size": ("int", "[1, inf)"),
  "segmenter.log_every_steps": ("int", "[1, inf)"),
  "segmenter.checkpoint_every_steps": ("int", "[1, inf)"),
  "eval.max_examples": ("int", "[0, inf)"),
  "eval.batch_size": ("int", "[1, inf)"),
  "eval.num_generated": ("int", "[1, inf)"),
  "eval.fid_samples": ("int", "[0, inf)"),
  "eval.fid_real_images": ("int", "[2, inf)"),
  "runtime.lease_stale_after_s": ("float", "[1, inf)"),
}

_KINDS = {fields.Int: "int", fields.Float: "float", fields.PowerOfTwo: "pow2"}


def _bounded_rules():
  """field -> its Int / Float / PowerOfTwo rule (inside a Maybe, too)."""
  out = {}
  for name, rule in fields.FIELD_RULES.items():
    rule = rule.rule if isinstance(rule, fields.Maybe) else rule
    if type(rule) in _KINDS:
      out[name] = rule
  return out


def _interval(rule):
  """(kind, interval) of a rule, in RANGES' notation."""
  lo = -INF if rule.lo is None else rule.lo
  hi = INF if getattr(rule, "hi", None) is None else rule.hi
  lo_open = getattr(rule, "lo_open", False) or lo == -INF
  hi_open = getattr(rule, "hi_open", False) or hi == INF
  g = lambda v: "inf" if v == INF else "-inf" if v == -INF else f"{v:g}"
  text = f"{'(' if lo_open else '['}{g(lo)}, {g(hi)}{')' if hi_open else ']'}"
  return _KINDS[type(rule)], text


def test_the_rules_have_the_pinned_ranges():
  rules = _bounded_rules()
  got = {name: _interval(rule) for name, rule in rules.items()}
  changed = {
    n: (got.get(n), RANGES.get(n)) for n in set(got) | set(RANGES) if got.get(n) != RANGES.get(n)
  }
  assert not changed, f"field: (the rule's range, the pinned range): {changed}"


def _past_and_inside(rule):
  """[(value just past a bound, value at or just inside it)] for each finite bound."""
  out = []
  if isinstance(rule, fields.PowerOfTwo):
    out.append((rule.lo // 2, rule.lo))
    if rule.hi is not None:
      out.append((rule.hi * 2, rule.hi))
    return out
  if isinstance(rule, fields.Int):
    if rule.lo is not None:
      out.append((rule.lo - 1, rule.lo))
    if rule.hi is not None:
      out.append((rule.hi + 1, rule.hi))
    return out
  if rule.lo is not None:
    below = float(np.nextafter(rule.lo, -INF))
    above = float(np.nextafter(rule.lo, INF))
    out.append((rule.lo, above) if rule.lo_open else (below, rule.lo))
  if rule.hi is not None:
    below = float(np.nextafter(rule.hi, -INF))
    above = float(np.nextafter(rule.hi, INF))
    out.append((rule.hi, below) if rule.hi_open else (above, rule.hi))
  return out


def _set(config, dotted, value):
  *path, leaf = dotted.split(".")
  node = config
  for part in path:
    node = node[part]
  node[leaf] = value


@pytest.mark.parametrize("field", sorted(_bounded_rules()))
def test_a_value_just_past_each_bound_is_refused_in_one_line_naming_the_field(field):
  rule = _bounded_rules()[field]
  for past, inside in _past_and_inside(rule):
    assert rule(field, inside) is None, f"{field}={inside!r} is inside its range"
    config = tiny.get_config()
    _set(config, field, past)
    with pytest.raises(ConfigError) as e:
      validate.validate_config(config, "train")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{field}={past!r} "), message
