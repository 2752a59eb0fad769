"""Segmentation metrics on binary masks (NumPy).

Conventions (used everywhere in this project):

* Masks are [H, W] (one image) or [N, H, W] (a batch). A mask argument of the metric functions is
  binary: bool, or numeric where a value >= 0.5 is foreground, so {0, 1} and {0, 255} masks both
  work. Soft ground truth (e.g. CUB masks in [0, 1] or 0..255) is binarized at 0.5 with
  :func:`binarize` first.
* Every metric is computed per image; functions return a float for one [H, W] mask and a float64
  array [N] for a batch. :func:`segmentation_metrics` averages the per-image values over images.
* Foreground IoU = |P & G| / |P | G|, 1.0 when both are empty (nothing to find, nothing found).
  Two-class mean IoU = (IoU of the foreground + IoU of the background) / 2, each with the same
  empty-union convention. The two differ a lot on small objects; always say which one you report.
* F-beta = (1 + b2) TP / ((1 + b2) TP + b2 FN + FP) with b2 = beta^2 = 0.3 (the saliency
  convention); this equals (1 + b2) P R / (b2 P + R) and is 1.0 when prediction and ground truth
  are both empty. max F-beta of a soft score map s in [0, 1] (0..255 integer maps are read as
  s / 255, integer {0, 1} maps as binary masks):
  the maximum over the 255 thresholds t_k = k / 255, k = 1..255, of the F-beta of (s >= t_k),
  per image, then (in :func:`segmentation_metrics`) averaged over images. A binary map gives the
  same mask at every threshold, so its max F-beta is the F-beta of that mask.
"""

from typing import Dict, Optional, Tuple

import cv2
import numpy as np

NUM_THRESHOLDS = 255


def binarize(mask, threshold: float = 0.5, scale: Optional[float] = None) -> np.ndarray:
  """Binarizes a (soft) mask: ``mask / scale >= threshold`` as bool.

  ``scale`` defaults to 1 for bool and float arrays; for integer arrays it defaults to 255 when
  the array holds a value above 1 (a 0..255 map) and to 1 otherwise (a {0, 1} mask). Pass it
  explicitly when that guess could be wrong (e.g. a 0..255 map whose values are all 0 or 1).
  """
  m = np.asarray(mask)
  if m.dtype == bool:
    return m
  if scale is None:
    scale = 255.0 if (np.issubdtype(m.dtype, np.integer) and m.size and m.max() > 1) else 1.0
  return m.astype(np.float64) >= threshold * scale


def _as_bool(mask) -> np.ndarray:
  m = np.asarray(mask)
  return m if m.dtype == bool else m >= 0.5


def _batched(pred, gt) -> Tuple[np.ndarray, np.ndarray, bool]:
  p, g = _as_bool(pred), _as_bool(gt)
  if p.shape != g.shape:
    raise ValueError(
      f"prediction shape {p.shape} and ground-truth shape {g.shape} differ; "
      "resize the prediction first (see resize_to)."
    )
  if p.ndim not in (2, 3):
    raise ValueError(f"masks must be [H, W] or [N, H, W], got shape {p.shape}.")
  single = p.ndim == 2
  if single:
    p, g = p[None], g[None]
  return p.reshape(len(p), -1), g.reshape(len(g), -1), single


def _out(values: np.ndarray, single: bool):
  return float(values[0]) if single else values


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  num = num.astype(np.float64)
  den = den.astype(np.float64)
  return np.where(den > 0, num / np.maximum(den, 1), 1.0)


def foreground_iou(pred, gt):
  """Per-image IoU of the foreground; 1.0 when both masks are empty."""
  p, g, single = _batched(pred, gt)
  inter = np.count_nonzero(p & g, axis=1)
  union = np.count_nonzero(p | g, axis=1)
  return _out(_ratio(inter, union), single)


def background_iou(pred, gt):
  """Per-image IoU of the background; 1.0 when both masks are full."""
  p, g, single = _batched(pred, gt)
  inter = np.count_nonzero(~p & ~g, axis=1)
  union = np.count_nonzero(~p | ~g, axis=1)
  return _out(_ratio(inter, union), single)


def mean_iou_two_class(pred, gt):
  """Per-image mean of the foreground IoU and the background IoU."""
  fg = np.asarray(foreground_iou(pred, gt))
  bg = np.asarray(background_iou(pred, gt))
  res = 0.5 * (fg + bg)
  return float(res) if res.ndim == 0 else res


def pixel_accuracy(pred, gt):
  """Per-image fraction of pixels whose label (fg / bg) is right."""
  p, g, single = _batched(pred, gt)
  return _out(np.mean(p == g, axis=1), single)


def _score_levels(scores) -> np.ndarray:
  """Number of thresholds t_k = k / 255 (k >= 1) that each score reaches: an int in 0..255."""
  s = np.asarray(scores)
  if s.dtype == bool:
    return s.astype(np.int64) * NUM_THRESHOLDS
  if np.issubdtype(s.dtype, np.integer):
    if s.size and s.max() > 1:  # a 0..255 map
      return np.clip(s.astype(np.int64), 0, NUM_THRESHOLDS)
    return (s > 0).astype(np.int64) * NUM_THRESHOLDS  # a {0, 1} mask
  # Float scores in [0, 1]: s >= k / 255  <=>  floor(255 s) >= k (a tiny tolerance absorbs the
  # rounding of values such as k / 255 stored in float32).
  s = np.clip(s.astype(np.float64), 0.0, 1.0)
  return np.floor(s * NUM_THRESHOLDS + 1e-6).astype(np.int64)


def f_beta(pred, gt, beta2: float = 0.3):
  """Per-image F-beta of a binary prediction (definition in the module docstring)."""
  p, g, single = _batched(pred, gt)
  tp = np.count_nonzero(p & g, axis=1).astype(np.float64)
  fp = np.count_nonzero(p & ~g, axis=1)
  fn = np.count_nonzero(~p & g, axis=1)
  return _out(_ratio((1 + beta2) * tp, (1 + beta2) * tp + beta2 * fn + fp), single)


def max_f_beta(scores, gt, beta2: float = 0.3):
  """Per-image max over the thresholds k / 255 (k = 1..255) of F-beta of ``scores >= k / 255``.

  ``scores``: a soft map in [0, 1] (float), a 0..255 map (integer dtype with some value > 1), or
  a binary mask (bool, or an integer array with values in {0, 1}).
  """
  s = np.asarray(scores)
  g = _as_bool(gt)
  if s.shape != g.shape:
    raise ValueError(f"scores shape {s.shape} and ground-truth shape {g.shape} differ.")
  if s.ndim not in (2, 3):
    raise ValueError(f"score maps must be [H, W] or [N, H, W], got shape {s.shape}.")
  single = s.ndim == 2
  if single:
    s, g = s[None], g[None]
  n = len(s)
  levels = _score_levels(s).reshape(n, -1)
  g = g.reshape(n, -1)
  offsets = (np.arange(n) * (NUM_THRESHOLDS + 1))[:, None]
  bins = (levels + offsets).ravel()
  size = n * (NUM_THRESHOLDS + 1)
  hist_all = np.bincount(bins, minlength=size).reshape(n, -1)
  hist_fg = np.bincount(bins, weights=g.ravel().astype(np.float64), minlength=size).reshape(n, -1)
  # Predicted-positive counts at threshold k: pixels with level >= k (reverse cumulative sums).
  pos = np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)
  tp = np.cumsum(hist_fg[:, ::-1], axis=1)[:, ::-1][:, 1:]
  fp = pos - tp
  fn = g.sum(axis=1, keepdims=True) - tp
  num = (1 + beta2) * tp
  den = num + beta2 * fn + fp
  f = np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)
  return _out(f.max(axis=1), single)


def segmentation_metrics(pred_masks, gt_masks, scores=None) -> Dict[str, float]:
  """Image-averaged metrics: {'fg_iou', 'miou', 'pixel_accuracy', 'max_fbeta'}.

  ``max_fbeta`` uses ``scores`` (soft maps) when given, else the binary predictions.
  """
  pred = _as_bool(pred_masks)
  gt = _as_bool(gt_masks)
  if pred.ndim == 2:
    pred, gt = pred[None], gt[None]
    scores = None if scores is None else np.asarray(scores)[None]
  return {
    "fg_iou": float(np.mean(foreground_iou(pred, gt))),
    "miou": float(np.mean(mean_iou_two_class(pred, gt))),
    "pixel_accuracy": float(np.mean(pixel_accuracy(pred, gt))),
    "max_fbeta": float(np.mean(max_f_beta(pred if scores is None else scores, gt))),
  }


def resize_to(mask, size: Tuple[int, int], mode: str = "nearest") -> np.ndarray:
  """Resizes a binary mask [H, W] or [N, H, W] to ``size = (H', W')``; returns uint8 {0, 1}.

  mode 'nearest': nearest neighbour; mode 'area': area-average (box filter when shrinking,
  bilinear when growing) then foreground where the average >= 0.5.
  """
  m = _as_bool(mask).astype(np.uint8)
  if mode not in ("nearest", "area"):
    raise ValueError(f"resize_to: mode must be 'nearest' or 'area', got {mode!r}.")
  h, w = int(size[0]), int(size[1])
  single = m.ndim == 2
  if single:
    m = m[None]
  out = np.empty((len(m), h, w), np.uint8)
  for i, mi in enumerate(m):
    if mode == "nearest":
      out[i] = cv2.resize(mi, (w, h), interpolation=cv2.INTER_NEAREST)
    else:
      shrink = h <= mi.shape[0] and w <= mi.shape[1]
      interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
      out[i] = cv2.resize(mi.astype(np.float32), (w, h), interpolation=interp) >= 0.5
  return out[0] if single else out
