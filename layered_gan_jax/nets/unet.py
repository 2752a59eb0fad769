"""The project's one segmentation network: a small U-Net (flax linen), and its loss.

Used by the segmenter distilled from the generator (``train_segmenter``) and by the supervised
reference segmenter of the benchmarks (``benchmarks/reference_segmenter.py``).

Model: ``levels`` resolutions (``width * 2**l`` channels at level l, two 3x3 convs + GroupNorm +
ReLU per level, 2x2 average-pool down, nearest-neighbour up + skip concatenation), a 1x1 conv to
one logit per pixel. Input: images [N, H, W, 3] in [-1, 1], H and W divisible by
``2 ** (levels - 1)``.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class _ConvBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = nn.Conv(self.features, (3, 3), use_bias=False)(x)
      x = nn.GroupNorm(num_groups=max(1, min(8, self.features // 4)))(x)
      x = nn.relu(x)
    return x


class UNet(nn.Module):
  """Images [N, H, W, 3] in [-1, 1] -> foreground logits [N, H, W]."""

  width: int = 16
  levels: int = 4

  @nn.compact
  def __call__(self, x):
    skips = []
    for level in range(self.levels):
      if level:
        x = nn.avg_pool(x, (2, 2), (2, 2))
      x = _ConvBlock(self.width * 2**level)(x)
      skips.append(x)
    for level in reversed(range(self.levels - 1)):
      n, h, w, c = x.shape
      x = jax.image.resize(x, (n, 2 * h, 2 * w, c), "nearest")
      x = _ConvBlock(self.width * 2**level)(jnp.concatenate([x, skips[level]], axis=-1))
    return nn.Conv(1, (1, 1))(x)[..., 0]


def check_resolution(resolution: int, levels: int) -> None:
  if resolution % 2 ** (levels - 1):
    raise ValueError(
      f"resolution {resolution} must be divisible by 2**(levels - 1) = "
      f"{2 ** (levels - 1)} (fewer U-Net levels or another resolution)"
    )


def segmentation_loss(logits, masks, dice_weight: float, weights: Optional[jax.Array] = None):
  """Per image: mean per-pixel BCE + ``dice_weight`` * (1 - soft Dice); averaged over images
  with ``weights`` [N] (all ones by default; a zero weight drops an image, and an all-zero batch
  gives 0). Returns ``(loss, bce)``."""
  bce_map = optax.sigmoid_binary_cross_entropy(logits, masks)
  p = jax.nn.sigmoid(logits)
  inter = jnp.sum(p * masks, axis=(1, 2))
  denom = jnp.sum(p, axis=(1, 2)) + jnp.sum(masks, axis=(1, 2))
  dice = (2.0 * inter + 1.0) / (denom + 1.0)
  if weights is None:
    bce = jnp.mean(bce_map)
    return bce + dice_weight * jnp.mean(1.0 - dice), bce
  bce_per = jnp.mean(bce_map, axis=(1, 2))
  per_image = bce_per + dice_weight * (1.0 - dice)
  total = jnp.maximum(jnp.sum(weights), 1e-8)
  return jnp.sum(weights * per_image) / total, jnp.sum(weights * bce_per) / total
