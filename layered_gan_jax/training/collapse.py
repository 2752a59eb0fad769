"""Collapse of the layered generator, told from its masks on the fixed sample latents.

A layered GAN can collapse into a mask that is empty (the background generator draws the whole
image), full (the foreground generator does) or the same for every latent. At every sample step
the trainer computes :func:`mask_health` of the EMA generator's masks on the fixed latents and
feeds it to a :class:`CollapseMonitor`, which reports once one of these has held for
``patience`` consecutive sample steps.
"""

from typing import Dict, Optional

import numpy as np

EMPTY_BELOW = 0.01  # Mean binarized coverage below this: the mask is empty.
FULL_ABOVE = 0.99  # Above this: the mask is full.
CONSTANT_BELOW = 0.01  # Mean per-pixel std of the soft mask over the latents below this.


def mask_health(masks: np.ndarray) -> Dict[str, float]:
  """Statistics of masks [N, H, W] (or [N, H, W, 1]) in [0, 1] over N latents."""
  m = np.asarray(masks, np.float32)
  if m.ndim == 4:
    m = m[..., 0]
  per_image = (m >= 0.5).mean(axis=(1, 2))
  return {
    "mask_coverage": float(m.mean()),
    "mask_binary_fraction": float(np.mean((m < 0.1) | (m > 0.9))),
    "binarized_coverage_mean": float(per_image.mean()),
    "binarized_coverage_std": float(per_image.std()),
    "mask_variation": float(m.std(axis=0).mean()),
  }


def diagnose(health: Dict[str, float]) -> Optional[str]:
  """'empty', 'full', 'constant' or None (healthy)."""
  if health["binarized_coverage_mean"] < EMPTY_BELOW:
    return "empty"
  if health["binarized_coverage_mean"] > FULL_ABOVE:
    return "full"
  if health["mask_variation"] < CONSTANT_BELOW:
    return "constant"
  return None


class CollapseMonitor:
  """Counts consecutive sample steps with the same diagnosis; ``update`` returns a one-line
  message when the count reaches ``patience`` (and at every later collapsed step)."""

  def __init__(self, patience: int, state: Optional[Dict] = None):
    if patience < 1:
      raise ValueError(f"collapse patience {patience} must be >= 1")
    self.patience = patience
    state = state or {}
    self.reason = state.get("reason")
    self.count = int(state.get("count", 0))
    self.since = state.get("since")
    self.last_healthy = state.get("last_healthy")

  def state(self) -> Dict:
    """What a checkpoint keeps, so that a resumed run counts on."""
    return {
      "reason": self.reason,
      "count": self.count,
      "since": self.since,
      "last_healthy": self.last_healthy,
    }

  def update(self, step: int, health: Dict[str, float]) -> Optional[str]:
    reason = diagnose(health)
    if reason is None:
      self.reason, self.count, self.since, self.last_healthy = None, 0, None, step
      return None
    if reason != self.reason:
      self.reason, self.count, self.since = reason, 0, step
    self.count += 1
    if self.count < self.patience:
      return None
    what = {
      "empty": "empty (binarized coverage %.3f)" % health["binarized_coverage_mean"],
      "full": "full (binarized coverage %.3f)" % health["binarized_coverage_mean"],
      "constant": "the same for every latent (per-pixel std %.4f)" % health["mask_variation"],
    }[reason]
    healthy = (
      "never healthy so far"
      if self.last_healthy is None
      else f"last healthy at step {self.last_healthy}"
    )
    return (
      f"collapse: the generator's mask has been {what} for {self.count} sample steps "
      f"(since step {self.since}; {healthy})"
    )
