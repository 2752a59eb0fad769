"""Colours, textures and shading of the synthetic dataset (``synthetic``): float32 images
[R, R, 3] in (about) [0, 1], defined in continuous image coordinates and evaluated at pixel
centres, drawn from a numpy ``Generator``.
"""

import bisect
import functools
from typing import Tuple

import cv2
import numpy as np

TWO_PI = 2.0 * np.pi


@functools.lru_cache(maxsize=None)
def grid(n: int) -> Tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates in [0, 1]: X varies along columns (x), Y along rows (y)."""
  c = (np.arange(n, dtype=np.float32) + 0.5) / np.float32(n)
  xx, yy = np.meshgrid(c, c)
  xx.setflags(write=False)
  yy.setflags(write=False)
  return xx, yy


# ----------------------------------------------------------------------------------------------
# Colours.

HSV_OFFSETS = np.array([5.0, 3.0, 1.0])


def hsv_to_rgb(h, s, v):
  """Vectorised HSV -> RGB for a few colours: inputs [k] in [0, 1], output [k, 3] float32."""
  k = (HSV_OFFSETS + 6.0 * h[:, None]) % 6.0
  ramp = np.minimum(np.maximum(np.minimum(k, 4.0 - k), 0.0), 1.0)
  return (v[:, None] * (1.0 - s[:, None] * ramp)).astype(np.float32)


def random_colors(rng, n: int) -> np.ndarray:
  """``n`` colours from one broad distribution (all hues, greys to saturated, dark to light)."""
  u = rng.random((3, n))
  sat = u[1] ** 0.8
  val = 0.12 + 0.88 * u[2] ** 0.7
  return hsv_to_rgb(u[0], sat, val)


# ----------------------------------------------------------------------------------------------
# Textures: float32 [R, R, 3] in (about) [0, 1], defined in continuous image coordinates.

LUT_T = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]


def map_colors(t: np.ndarray, colors: np.ndarray) -> np.ndarray:
  """Maps a scalar field t in [0, 1] onto a linear ramp through ``colors`` [k, 3] (k = 2, 3).

  The ramp is tabulated at 256 levels (the output is 8-bit anyway) and looked up.
  """
  if len(colors) == 2:
    lut = colors[0] + LUT_T * (colors[1] - colors[0])
  else:
    lo = np.minimum(2.0 * LUT_T, 1.0)
    hi = np.maximum(2.0 * LUT_T - 1.0, 0.0)
    lut = colors[0] + lo * (colors[1] - colors[0]) + hi * (colors[2] - colors[1])
  idx = (t * np.float32(255.0) + np.float32(0.5)).astype(np.intp)
  return np.take(lut.astype(np.float32), idx, axis=0)


def gray3(field: np.ndarray) -> np.ndarray:
  """[R, R] float32 -> [R, R, 3] (the same value in each channel)."""
  return cv2.cvtColor(np.ascontiguousarray(field, dtype=np.float32), cv2.COLOR_GRAY2RGB)


def smooth_field(rng, n: int, cells: int, channels: int = 1) -> np.ndarray:
  """Smooth random field in [0, 1]: a cells x cells grid of random values upsampled bicubically
  to 16 x 16, then bilinearly to n x n (cheaper than bicubic all the way, as smooth)."""
  shape = (cells, cells) if channels == 1 else (cells, cells, channels)
  small = rng.random(shape, dtype=np.float32)
  field = cv2.resize(small, (16, 16), interpolation=cv2.INTER_CUBIC)
  if n != 16:
    field = cv2.resize(field, (n, n), interpolation=cv2.INTER_LINEAR)
  np.maximum(field, 0.0, out=field)
  np.minimum(field, 1.0, out=field)
  return field


def stretch(t: np.ndarray) -> np.ndarray:
  lo, hi = float(t.min()), float(t.max())
  return (t - lo) * np.float32(1.0 / max(hi - lo, 1e-3))


def texture(rng, n: int, cx: float, cy: float, colors: np.ndarray, cum_probs, size: float):
  """One texture drawn from the shared families (``cum_probs``: their cumulative weights);
  ``(cx, cy)`` is the frame it is attached to, ``size`` its scale (image units)."""
  xx, yy = grid(n)
  u = xx - np.float32(cx)
  v = yy - np.float32(cy)
  kind = min(bisect.bisect_right(cum_probs, rng.random() * cum_probs[-1]), len(cum_probs) - 1)
  ang = rng.uniform(0.0, TWO_PI)
  ca, sa = np.float32(np.cos(ang)), np.float32(np.sin(ang))
  two = colors[:2]
  if kind == 0:  # flat colour
    img = np.empty((n, n, 3), np.float32)
    img[...] = colors[0]
    return img
  if kind == 1:  # linear gradient across the frame (or across the object)
    span = size * rng.uniform(1.2, 3.0)
    t = np.minimum(np.maximum(0.5 + (u * ca + v * sa) * np.float32(1.0 / span), 0.0), 1.0)
    return map_colors(t, colors if rng.random() < 0.3 else two)
  if kind == 2:  # stripes: soft (sinusoidal) or hard, random orientation and period
    period = rng.uniform(0.04, 0.2)
    t = 0.5 + 0.5 * np.sin(
      (u * ca + v * sa) * np.float32(TWO_PI / period) + np.float32(rng.uniform(0, TWO_PI))
    )
    if rng.random() < 0.5:
      t = (t > rng.uniform(0.3, 0.7)).astype(np.float32)
    return map_colors(t, two)
  if kind == 3:  # checks
    period = rng.uniform(0.06, 0.2)
    k = np.float32(TWO_PI / period)
    t = (np.sin((u * ca + v * sa) * k) * np.sin((v * ca - u * sa) * k) > 0).astype(np.float32)
    return map_colors(t, two)
  if kind == 4:  # smooth random field through two or three colours
    t = stretch(smooth_field(rng, n, int(rng.integers(3, 9))))
    return map_colors(t, colors if rng.random() < 0.5 else two)
  if kind == 5:  # colour clouds: independent smooth fields per channel around a base colour
    f = smooth_field(rng, n, int(rng.integers(3, 7)), channels=3)
    return colors[0] + (f - 0.5) * np.float32(rng.uniform(0.4, 0.9))
  # kind == 6: radial gradient / shaded solid around the frame's centre.
  r2 = (u * u + v * v) * np.float32(1.0 / (size * size))
  t = np.minimum(r2 * np.float32(rng.uniform(0.6, 1.2)), 1.0)
  return map_colors(t, two)


def lighting(rng, img: np.ndarray, n: int, strength: float) -> np.ndarray:
  """Multiplicative linear shading with a random light direction."""
  xx, yy = grid(n)
  ang = rng.uniform(0.0, TWO_PI)
  ramp = (xx - 0.5) * np.float32(np.cos(ang)) + (yy - 0.5) * np.float32(np.sin(ang))
  return cv2.multiply(img, gray3(1.0 + np.float32(strength) * ramp))


def grain(rng, img: np.ndarray, n: int, sigma: float) -> np.ndarray:
  """Adds grey per-pixel grain: uniform noise with standard deviation ``sigma``."""
  noise = rng.random((n, n), dtype=np.float32) - np.float32(0.5)
  return cv2.add(img, gray3(noise * np.float32(sigma * np.sqrt(12.0))))


SHIFT = 4  # sub-pixel bits for OpenCV drawing


def distractors(rng, img: np.ndarray, n: int, palette: np.ndarray, extra: np.ndarray) -> None:
  """Paints small marks (discs, boxes, bars, small rings) into the background, in place."""
  count = int(rng.integers(1, 9))
  params = rng.random((count, 8))
  one = float(1 << SHIFT)
  for j, p in enumerate(params):
    kind = int(p[0] * 4)
    rad = (0.02 + 0.05 * p[1]) * n  # pixels
    cx, cy = p[2] * n - 0.5, p[3] * n - 0.5  # pixel coordinates (OpenCV: centres at integers)
    color = palette[int(p[4] * len(palette))] if p[5] < 0.6 else extra[j % len(extra)]
    color = tuple(float(c) for c in color)
    centre = (int(round(cx * one)), int(round(cy * one)))
    if kind == 0:  # disc
      cv2.circle(img, centre, int(round(rad * one)), color, -1, cv2.LINE_8, SHIFT)
    elif kind == 3:  # small ring
      thick = max(1, int(round(0.45 * rad)))
      cv2.circle(img, centre, int(round(0.775 * rad * one)), color, thick, cv2.LINE_8, SHIFT)
    else:  # rotated box (kind 1) or bar (kind 2)
      a = p[6] * np.pi
      half_long = rad if kind == 1 else 2.0 * rad
      half_short = rad * (0.4 + 0.6 * p[7]) if kind == 1 else max(0.25 * rad, 0.5)
      ux, uy = np.cos(a), np.sin(a)
      corners = np.array(
        [
          [
            cx + sx * half_long * ux - sy * half_short * uy,
            cy + sx * half_long * uy + sy * half_short * ux,
          ]
          for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
      )
      cv2.fillConvexPoly(img, np.round(corners * one).astype(np.int32), color, cv2.LINE_8, SHIFT)


def rim_shading(rng, fg: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
  """Darkens the object towards its outline (outer edge and hole edges): the factor falls
  linearly from 1 at ``width`` (image units) inside the edge to ``1 - strength`` on it. The
  object's look is then tied to its own outline, as a lit solid's is."""
  width = np.float32(rng.uniform(0.04, 0.08))
  strength = np.float32(rng.uniform(0.35, 0.7))
  # Distance (pixels) from each object pixel's centre to the nearest background pixel's centre;
  # the edge lies half a pixel before that.
  dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
  depth = (dist - np.float32(0.5)) * np.float32(1.0 / n)
  factor = 1.0 - strength * np.maximum(1.0 - depth / width, 0.0)
  return cv2.multiply(fg, gray3(factor))


def unit_to_uint8(img: np.ndarray) -> np.ndarray:
  """[0, 1] float32 -> uint8, rounded to nearest, saturated at both ends."""
  img = np.maximum(img, np.float32(0.0))
  return cv2.convertScaleAbs(img, alpha=255.0)
