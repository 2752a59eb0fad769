"""Whether a checkpoint holds the network the config describes: read from the config JSON
saved beside its arrays, before anything is restored (preflight) and again at each restore.
Imports no JAX.
"""

import json
from typing import Any, Dict, List

from layered_gan_jax.checks.fields import check

# Fields of the model that must match a checkpoint being resumed or restored.
MODEL_FIELDS = (
  "model.variant",
  "model.channels",
  "model.style_dim",
  "model.mapping_layers",
  "model.fused_resolution",
  "model.mask_logit_offset",
  "train.resolution",
)
# Fields added after checkpoints existed: their value when a saved config lacks them.
_FIELD_DEFAULTS = {"model.mask_logit_offset": 0.0}
# Encoder fields that decide its parameters' shapes (a checkpoint restores only with the same).
ENCODER_SHAPE_FIELDS = ("target", "width", "max_width", "blocks_per_stage", "predict_placement")


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
  check(
    not diffs,
    f"the checkpoint in {directory} (step {step}) holds another model: "
    + "; ".join(diffs)
    + ". Use the config it was trained with, or another --workdir",
  )


def check_saved_encoder(saved: Dict[str, Any], config, directory, step: int) -> None:
  """Refuses the encoder checkpoint ``step`` of ``directory`` (its config ``saved``) if its
  parameters' shapes follow other ``encoder`` settings than ``config``'s."""
  saved_enc = saved.get("encoder", {})
  diffs = [
    f"encoder.{k}: checkpoint {saved_enc.get(k, False)!r} vs config {config.encoder[k]!r}"
    for k in ENCODER_SHAPE_FIELDS
    if saved_enc.get(k, False) != config.encoder[k]
  ]
  check(
    not diffs,
    f"the encoder checkpoint in {directory} (step {step}) holds another "
    "encoder: " + "; ".join(diffs) + ". Use the settings it was trained with",
  )


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
