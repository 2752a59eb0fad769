"""Training pairs for the distilled segmenter, recomposed from the generator's layers.

A layered generator gives more than images: its foreground and mask can be moved, scaled and
mirrored together and laid over another background, and the moved mask is still the exact label
of the composite. Pure functions of arrays and keys (jit- and shard-friendly), NHWC layouts:

* :func:`mask_filter`: which generated masks are usable labels (area range, near-binary).
* :func:`sample_placement`: per sample a scale, a mirror flag and a target position that keeps
  at least ``1 - max_cut`` of the mask's extent inside the frame along each axis.
* :func:`place`: the affine resampling itself (bilinear, zeros outside the source frame).
* :func:`recompose`: layers -> (images, labels, weights).

Coordinates are continuous pixel units, pixel ``i`` covering ``[i, i + 1)`` (centre ``i + 0.5``),
points as (y, x).
"""

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from layered_gan_jax.nets import compositing

Array = jax.Array


def mask_filter(masks: Array, *, min_area: float, max_area: float, max_uncertainty: float) -> Array:
  """Bool [B]: masks [B, H, W] in [0, 1] whose binarized area (share of pixels >= 0.5) lies in
  ``[min_area, max_area]`` and whose mean ``min(m, 1 - m)`` is at most ``max_uncertainty``."""
  area = jnp.mean(masks >= 0.5, axis=(1, 2))
  uncertainty = jnp.mean(jnp.minimum(masks, 1.0 - masks), axis=(1, 2))
  return (area >= min_area) & (area <= max_area) & (uncertainty <= max_uncertainty)


def mask_geometry(masks: Array) -> Dict[str, Array]:
  """Centroid [B, 2] and bounding box (``lo``, ``hi`` [B, 2], continuous coordinates) of the
  binarized masks [B, H, W]; an empty mask gets the frame's centre and a zero-size box there."""
  b = (masks >= 0.5).astype(jnp.float32)
  _, h, w = masks.shape
  area = jnp.sum(b, axis=(1, 2))
  ys, xs = jnp.arange(h) + 0.5, jnp.arange(w) + 0.5
  rows, cols = jnp.sum(b, axis=2), jnp.sum(b, axis=1)  # [B, H], [B, W]
  empty = area == 0
  safe = jnp.maximum(area, 1.0)
  centre = jnp.array([h / 2.0, w / 2.0])
  centroid = jnp.stack([rows @ ys / safe, cols @ xs / safe], axis=-1)
  centroid = jnp.where(empty[:, None], centre, centroid)

  def extent(occupied, n):
    idx = jnp.arange(n, dtype=jnp.float32)
    lo = jnp.min(jnp.where(occupied > 0, idx, n), axis=1)
    hi = jnp.max(jnp.where(occupied > 0, idx + 1.0, 0.0), axis=1)
    return lo, hi

  (y0, y1), (x0, x1) = extent(rows, h), extent(cols, w)
  lo = jnp.where(empty[:, None], centre, jnp.stack([y0, x0], axis=-1))
  hi = jnp.where(empty[:, None], centre, jnp.stack([y1, x1], axis=-1))
  return {"centroid": centroid, "lo": lo, "hi": hi}


def sample_placement(
  key: Array,
  masks: Array,
  *,
  scale_range: Tuple[float, float],
  max_cut: float,
  flip_prob: float,
  translate: bool = True,
) -> Dict[str, Array]:
  """Random placements of the masks [B, H, W]: ``scale`` [B] log-uniform in ``scale_range``,
  ``flip`` [B] (mirror left-right with probability ``flip_prob``), ``source`` [B, 2] (the mask's
  centroid, the fixed point of the transform) and ``target`` [B, 2] (where it goes), uniform over
  the positions that keep at least ``1 - max_cut`` of the transformed bounding box's extent in
  the frame along each axis (the frame's centre line when none does); without ``translate``
  the centroid stays where it is."""
  batch, h, w = masks.shape
  k_scale, k_flip, k_pos = jax.random.split(key, 3)
  lo_s, hi_s = (float(v) for v in scale_range)
  scale = jnp.exp(jax.random.uniform(k_scale, (batch,), minval=jnp.log(lo_s), maxval=jnp.log(hi_s)))
  flip = jax.random.uniform(k_flip, (batch,)) < flip_prob
  geo = mask_geometry(masks)
  c, lo, hi = geo["centroid"], geo["lo"], geo["hi"]
  s = scale[:, None]
  before, after = s * (c - lo), s * (hi - c)  # Extent on each side of the centroid.
  mirrored = flip[:, None] & (jnp.arange(2) == 1)  # Mirroring swaps the two sides along x.
  before, after = jnp.where(mirrored, after, before), jnp.where(mirrored, before, after)
  slack = max_cut * (before + after)
  size = jnp.array([h, w], jnp.float32)
  t_lo, t_hi = before - slack, size - after + slack
  u = jax.random.uniform(k_pos, (batch, 2))
  target = jnp.where(t_lo <= t_hi, t_lo + u * (t_hi - t_lo), 0.5 * (t_lo + t_hi))
  if not translate:
    target = c
  return {"scale": scale, "flip": flip, "source": c, "target": target}


def place(x: Array, placement: Dict[str, Array]) -> Array:
  """Resamples images [B, H, W, C]: ``out(p) = x(source + M (p - target) / scale)`` with ``M``
  the identity or the left-right mirror, bilinear, zero outside the source frame."""
  _, h, w, _ = x.shape
  py, px = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")

  def one(img, scale, flip, source, target):
    qy = source[0] + (py - target[0]) / scale
    dx = (px - target[1]) / scale
    qx = source[1] + jnp.where(flip, -dx, dx)
    coords = [qy - 0.5, qx - 0.5]  # Array indices of the sampled points.
    return jnp.stack(
      [
        ndimage.map_coordinates(img[..., ch], coords, order=1, mode="constant", cval=0.0)
        for ch in range(img.shape[-1])
      ],
      axis=-1,
    )

  return jax.vmap(one)(
    x, placement["scale"], placement["flip"], placement["source"], placement["target"]
  )


def color_jitter(key: Array, images: Array, strength: float) -> Array:
  """Per image: brightness ``+ U(-s, s)``, contrast and saturation ``x U(1 - s, 1 + s)``,
  clipped to [-1, 1] (images in [-1, 1])."""
  batch = images.shape[0]
  kb, kc, ks = jax.random.split(key, 3)
  u = lambda k: jax.random.uniform(k, (batch, 1, 1, 1), minval=-strength, maxval=strength)
  grey = jnp.mean(images, axis=-1, keepdims=True)
  x = grey + (images - grey) * (1.0 + u(ks))
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  x = mean + (x - mean) * (1.0 + u(kc)) + u(kb)
  return jnp.clip(x, -1.0, 1.0)


def recompose(key: Array, layers: Dict[str, Array], cfg) -> Tuple[Array, Array, Array]:
  """Layers (``background``, ``foreground`` [B, H, W, 3], ``mask`` [B, H, W, 1]) -> training
  ``images`` [B, H, W, 3], ``labels`` [B, H, W] in {0, 1} and ``weights`` [B] (1 for masks that
  pass :func:`mask_filter`, else 0), following ``cfg`` (``config.segmenter``).

  With ``cfg.recompose``: the foreground and its mask are placed together
  (:func:`sample_placement`), over the background of the next sample in the batch (an
  independent latent) with probability ``cfg.swap_background_prob``, else over their own;
  otherwise the generator's own composite. Then optional colour jitter; label = mask >= 0.5
  (after placement)."""
  k_place, k_swap, k_jitter = jax.random.split(key, 3)
  mask = layers["mask"]
  weights = mask_filter(
    mask[..., 0], min_area=cfg.min_area, max_area=cfg.max_area, max_uncertainty=cfg.max_uncertainty
  ).astype(jnp.float32)
  background, foreground = layers["background"], layers["foreground"]
  if cfg.recompose:
    placement = sample_placement(
      k_place,
      mask[..., 0],
      scale_range=tuple(cfg.scale_range),
      max_cut=cfg.max_cut,
      flip_prob=cfg.flip_prob,
      translate=cfg.translate,
    )
    moved = place(jnp.concatenate([foreground, mask], axis=-1), placement)
    foreground, mask = moved[..., :3], moved[..., 3:]
    swap = jax.random.uniform(k_swap, (mask.shape[0], 1, 1, 1)) < cfg.swap_background_prob
    background = jnp.where(swap, jnp.roll(background, 1, axis=0), background)
  images = compositing.composite(background, foreground, mask)
  if cfg.color_jitter:
    images = color_jitter(k_jitter, images, cfg.color_jitter)
  labels = (mask[..., 0] >= 0.5).astype(jnp.float32)
  return images, labels, weights
