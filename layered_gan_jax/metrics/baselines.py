"""Trivial segmenters, the reference points for every segmentation number we report.

Each takes images uint8 [N, H, W, 3] (RGB) and returns masks uint8 [N, H, W] in {0, 1}:

* ``full_image``: everything is foreground (its foreground IoU is the mean object area).
* ``center_prior``: a fixed centred disc, diameter ``CENTER_PRIOR_DIAMETER`` = 0.6 of the image
  side (28% of the image area, about the typical object size of object-centric datasets). Chosen
  a priori, not tuned on any evaluation set.
* ``color_threshold``: the single global threshold on one channel (R, G, B, grey, or OpenCV's
  H, S, V) with one polarity that maximises the mean foreground IoU of the evaluated set, chosen
  with that set's ground truth (an oracle): an upper bound on what any colour threshold can do.
* ``kmeans_color``: 2-cluster k-means on each image's RGB colours (deterministic initialisation:
  the pixel farthest from the mean colour, then the pixel farthest from that one; Lloyd
  iterations). The foreground is the cluster that owns fewer pixels of the 1-pixel image border
  (ties: the smaller cluster), i.e. "objects do not fill the frame's edges".
* ``grabcut``: OpenCV GrabCut initialised with a rectangle ``margin = max(1, R // 16)`` pixels
  inside the border, 5 iterations, foreground = GC_FGD | GC_PR_FGD (the baseline of the paper's
  table). OpenCV's random generator is re-seeded before each image, so results are reproducible.
  If OpenCV fails on an image, the rectangle itself is that image's mask.
"""

from typing import Dict, Optional, Sequence

import cv2
import numpy as np

from layered_gan_jax import names

CENTER_PRIOR_DIAMETER = 0.6
COLOR_CHANNELS = ("r", "g", "b", "gray", "h", "s", "v")


def _check_images(images) -> np.ndarray:
  x = np.asarray(images)
  if x.ndim == 3 and x.shape[-1] == 3:
    raise ValueError(
      f"expected a batch of images [N, H, W, 3], got one image {x.shape}; use images[None]."
    )
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"expected images [N, H, W, 3], got shape {x.shape}.")
  if x.dtype != np.uint8:
    raise ValueError(f"expected uint8 images (0..255), got dtype {x.dtype}.")
  return x


def full_image(images) -> np.ndarray:
  x = _check_images(images)
  return np.ones(x.shape[:3], np.uint8)


def center_prior(images, diameter: float = CENTER_PRIOR_DIAMETER) -> np.ndarray:
  """A centred ellipse with axes ``diameter`` x the image height and width."""
  x = _check_images(images)
  n, h, w = x.shape[:3]
  yy = (np.arange(h) + 0.5) / h - 0.5
  xx = (np.arange(w) + 0.5) / w - 0.5
  r = 0.5 * diameter
  disc = (yy[:, None] / r) ** 2 + (xx[None, :] / r) ** 2 <= 1.0
  return np.broadcast_to(disc, (n, h, w)).astype(np.uint8)


def color_channels(images) -> Dict[str, np.ndarray]:
  """The uint8 channels the threshold baseline searches, each [N, H, W]."""
  x = _check_images(images)
  flat = x.reshape(-1, x.shape[2], 3)
  gray = cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY).reshape(x.shape[:3])
  hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(x.shape)
  return {
    "r": x[..., 0],
    "g": x[..., 1],
    "b": x[..., 2],
    "gray": gray,
    "h": hsv[..., 0],
    "s": hsv[..., 1],
    "v": hsv[..., 2],
  }


def fit_color_threshold(images, gt, channels: Sequence[str] = COLOR_CHANNELS):
  """Oracle search of (channel, threshold, polarity) maximising the mean foreground IoU.

  The rule is ``channel >= threshold`` (polarity 'above') or ``channel < threshold`` ('below'),
  with threshold in 0..256. Returns (channel, threshold, polarity, mean foreground IoU).
  """
  x = _check_images(images)
  g = np.asarray(gt) >= 0.5 if np.asarray(gt).dtype != bool else np.asarray(gt)
  if g.shape != x.shape[:3]:
    raise ValueError(f"ground truth shape {g.shape} does not match images {x.shape[:3]}.")
  n = len(x)
  g = g.reshape(n, -1)
  gsum = g.sum(axis=1).astype(np.float64)[:, None]
  offsets = (np.arange(n) * 256)[:, None]
  chans = color_channels(x)
  best = (None, 0, "above", -1.0)
  for name in channels:
    values = chans[name].reshape(n, -1).astype(np.int64) + offsets
    hist_all = np.bincount(values.ravel(), minlength=n * 256).reshape(n, 256)
    hist_fg = np.bincount(
      values.ravel(), weights=g.ravel().astype(np.float64), minlength=n * 256
    ).reshape(n, 256)
    # 'above' threshold t (0..256): predicted = value >= t; counts from reverse cumsums.
    zeros = np.zeros((n, 1))
    pos = np.concatenate([np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1], zeros], axis=1)
    tp = np.concatenate([np.cumsum(hist_fg[:, ::-1], axis=1)[:, ::-1], zeros], axis=1)
    total = hist_all.sum(axis=1, keepdims=True).astype(np.float64)
    for polarity, tp_t, pos_t in (("above", tp, pos), ("below", gsum - tp, total - pos)):
      union = pos_t + gsum - tp_t
      iou = np.where(union > 0, tp_t / np.maximum(union, 1e-12), 1.0).mean(axis=0)
      t = int(np.argmax(iou))
      if iou[t] > best[3]:
        best = (name, t, polarity, float(iou[t]))
  return best


def apply_color_threshold(images, channel: str, threshold: int, polarity: str) -> np.ndarray:
  values = color_channels(images)[channel]
  m = values >= threshold if polarity == "above" else values < threshold
  return m.astype(np.uint8)


def color_threshold(images, gt, channels: Sequence[str] = COLOR_CHANNELS) -> np.ndarray:
  """Masks of the oracle-best global threshold rule (see ``fit_color_threshold``)."""
  channel, threshold, polarity, _ = fit_color_threshold(images, gt, channels)
  return apply_color_threshold(images, channel, threshold, polarity)


def kmeans_color(images, iterations: int = 20, chunk: int = 64) -> np.ndarray:
  """Per-image 2-means on RGB; the cluster with fewer border pixels is the foreground."""
  x = _check_images(images)
  return np.concatenate(
    [_kmeans_chunk(x[i : i + chunk], iterations) for i in range(0, len(x), chunk)]
    or [np.zeros(x.shape[:3], np.uint8)]
  )


def _kmeans_chunk(x: np.ndarray, iterations: int) -> np.ndarray:
  n, h, w = x.shape[:3]
  pix = x.reshape(n, -1, 3).astype(np.float32)
  mean = pix.mean(axis=1, keepdims=True)
  idx = np.arange(n)
  a = pix[idx, np.argmax(((pix - mean) ** 2).sum(-1), axis=1)]
  b = pix[idx, np.argmax(((pix - a[:, None]) ** 2).sum(-1), axis=1)]
  centres = np.stack([a, b], axis=1)  # [n, 2, 3]
  labels = None
  for _ in range(iterations):
    d0 = ((pix - centres[:, None, 0]) ** 2).sum(-1)
    d1 = ((pix - centres[:, None, 1]) ** 2).sum(-1)
    new_labels = d1 < d0  # True: cluster 1
    if labels is not None and np.array_equal(new_labels, labels):
      break
    labels = new_labels
    for k, sel in ((0, ~labels), (1, labels)):
      count = sel.sum(axis=1)
      total = np.einsum("np,npc->nc", sel.astype(np.float32), pix)
      keep = count == 0  # empty cluster: keep its centre
      centres[:, k] = np.where(keep[:, None], centres[:, k], total / np.maximum(count, 1)[:, None])
  labels = labels.reshape(n, h, w)
  border = np.zeros((h, w), bool)
  border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
  ones_border = labels[:, border].sum(axis=1)
  zeros_border = border.sum() - ones_border
  ones_total = labels.reshape(n, -1).sum(axis=1)
  zeros_total = h * w - ones_total
  fg_is_one = (ones_border < zeros_border) | (
    (ones_border == zeros_border) & (ones_total <= zeros_total)
  )
  return np.where(fg_is_one[:, None, None], labels, ~labels).astype(np.uint8)


def grabcut(images, margin: Optional[int] = None, iterations: int = 5) -> np.ndarray:
  """OpenCV GrabCut from a rectangle ``margin`` pixels inside the border (default R // 16)."""
  x = _check_images(images)
  n, h, w = x.shape[:3]
  if margin is None:
    margin = max(1, min(h, w) // 16)
  rect = (margin, margin, w - 2 * margin, h - 2 * margin)
  out = np.zeros((n, h, w), np.uint8)
  for i in range(n):
    mask = np.zeros((h, w), np.uint8)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(x[i, :, :, ::-1])
    cv2.setRNGSeed(0)
    try:
      cv2.grabCut(bgr, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
      out[i] = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    except cv2.error:
      out[i, margin : h - margin, margin : w - margin] = 1
  return out


BASELINES = dict(zip(names.BASELINES, (full_image, center_prior, kmeans_color, grabcut)))
"""The baselines that need no ground truth (``color_threshold`` takes it as a second argument)."""
