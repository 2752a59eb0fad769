"""Embedded procedural dataset: one textured object over an independent textured background.

Nothing can be downloaded where this project is tested, so this module draws its own images, each
with an exact ground-truth object mask. Every example is a pure function of
``(seed, split, index)``: the random stream is ``np.random.default_rng(SeedSequence([seed,
split_id, index]))``, and the two splits use different ``split_id`` values, so their streams are
disjoint.

A scene is built from two full-frame layers and a mask, exactly like the generator's output:

* background: a full-frame texture (smooth random field, colour clouds, linear or radial
  gradient, stripes, checks, flat colour, or two such textures split by a wavy horizon), plus
  optional lighting, grain, and a clutter of small distractor marks (discs, boxes, bars, small
  rings). Distractors belong to the background: they are never in the mask.
* foreground: a texture of the same families, attached to the object (stripes, gradients and
  shading move with it), optionally shaded like a lit solid.
* foreground shading: most objects (``Layout.rim_probability``) darken towards their outline, so that
  their look is tied to their own shape, as a lit solid's is.
* mask: one object of varied shape: ellipse, polygon, star, smooth random blob; about a fifth of
  them have an elliptic hole (rings, shapes with a hole), so the mask has holes where background
  shows through. Objects lie anywhere inside the frame but keep ``Layout.margin`` (1/8 of the
  frame) from every border, as photographed objects mostly do.

Why the margin (version 2), and the baselines it makes strong: docs/data.md.

Two object categories (``CATEGORIES``), for runs on several sources: 'round' (ellipses and
blobs with smooth textures) and 'angular' (polygons and stars, flat, striped or checked), each a
``Layout`` with scenes of its own (``Layout.stream``) and so its own train and test splits; the
backgrounds are drawn as for the whole dataset.

The image is exactly ``where(mask, foreground, background)`` on the uint8 layers (no
anti-aliasing), so the mask matches the object's pixels exactly. ``render_layers`` returns the
three layers for checks of that.

Colours are drawn per scene from a shared palette, so colour statistics of object and
background overlap: shape, texture and boundary tell the object apart.

Geometry and textures are defined in continuous image coordinates ([0, 1] across the frame) and
evaluated at pixel centres, so one example rendered at different resolutions shows the same scene
(only the per-pixel grain and the pixel-rounded widths of thin distractor marks differ). The
object's visible area is kept within ``[MIN_OBJECT_AREA, MAX_OBJECT_AREA]`` of the frame: the
acceptance test runs on a fixed 32x32 grid (so it does not depend on the resolution), with a
small margin for the discretisation at the rendered resolution.
"""

import bisect
import dataclasses
import functools
from typing import Dict, Tuple

import cv2
import numpy as np

from layered_gan_jax.data import textures

SPLIT_SIZES = {"train": 20000, "test": 1000}
"""Nominal split sizes (what the input pipeline uses); any index >= 0 can be rendered."""

VERSION = 2
"""Bumped whenever the rendered images change; results and caches record it."""

RESOLUTIONS = (16, 32, 64, 128)
MIN_OBJECT_AREA = 0.08
MAX_OBJECT_AREA = 0.40


# The object's texture-family weights (the same families as Layout.bg_textures).
_FG_TEXTURE_WEIGHTS = (0.10, 0.16, 0.20, 0.08, 0.18, 0.12, 0.16)
_SHAPE_KINDS = ("ellipse", "polygon", "star", "blob")


def _check_weights(field: str, w, names: str, count: int) -> None:
  if len(w) != count or min(w) < 0 or sum(w) <= 0:
    raise ValueError(
      f"synthetic_layout.{field}={w} needs {count} weights >= 0, not all 0 ({names})"
    )


@dataclasses.dataclass(frozen=True)
class Layout:
  """How scenes are laid out. ``LAYOUT`` is the dataset's (``VERSION``) and ``CATEGORIES``
  its object categories; any other layout is a variant for experiments, whose results are not
  results of the dataset."""

  margin: float = 0.125
  """Every object pixel's centre lies at least this far (fraction of the frame) from each
  border; a negative margin lets objects be cut by the border."""
  rim_probability: float = 0.8
  """Share of objects whose colour darkens towards their outline (``textures.rim_shading``)."""
  bg_textures: Tuple[float, ...] = (0.04, 0.14, 0.16, 0.06, 0.28, 0.22, 0.10)
  """Weights of the background's texture families: flat, linear, stripes, checks, smooth field,
  clouds, radial."""
  shapes: Tuple[float, ...] = (0.25, 0.25, 0.20, 0.30)
  """Weights of the object's shape families: ellipse, polygon, star, blob."""
  fg_textures: Tuple[float, ...] = _FG_TEXTURE_WEIGHTS
  """Weights of the object's texture families (the families of ``bg_textures``)."""
  stream: int = 0
  """Which scenes: 0 draws the dataset's own; another number scenes independent of them (a
  category's own, so that two categories never share a background)."""

  def __post_init__(self):
    if not -0.5 < self.margin < 0.5:
      raise ValueError(f"synthetic_layout.margin={self.margin} must be in (-0.5, 0.5)")
    if not 0.0 <= self.rim_probability <= 1.0:
      raise ValueError(f"synthetic_layout.rim_probability={self.rim_probability} must be in [0, 1]")
    families = "flat, linear, stripes, checks, smooth field, clouds, radial"
    _check_weights("bg_textures", tuple(self.bg_textures), families, len(_FG_TEXTURE_WEIGHTS))
    _check_weights("fg_textures", tuple(self.fg_textures), families, len(_FG_TEXTURE_WEIGHTS))
    _check_weights("shapes", tuple(self.shapes), ", ".join(_SHAPE_KINDS), len(_SHAPE_KINDS))
    if isinstance(self.stream, bool) or not isinstance(self.stream, int) or self.stream < 0:
      raise ValueError(f"synthetic_layout.stream={self.stream!r} must be an integer >= 0")


LAYOUT = Layout()

CATEGORIES = {
  # Smooth outlines (ellipses, blobs) filled with smooth textures (gradients, fields, clouds).
  "round": Layout(
    shapes=(0.5, 0.0, 0.0, 0.5), fg_textures=(0.0, 0.2, 0.0, 0.0, 0.3, 0.25, 0.25), stream=1
  ),
  # Straight edges and corners (polygons, stars) filled with flat colour, stripes or checks.
  "angular": Layout(
    shapes=(0.0, 0.5, 0.5, 0.0), fg_textures=(0.2, 0.0, 0.45, 0.35, 0.0, 0.0, 0.0), stream=2
  ),
}
"""The dataset's object categories: each a layout whose objects differ from the other's in shape
family and texture, over the same backgrounds, with scenes of its own (train and test splits)."""

_SPLIT_IDS = {"train": 1, "test": 2}
_CHECK_GRID = 32  # resolution-independent grid on which the object's area is accepted
_ACCEPT_LO, _ACCEPT_HI = 0.095, 0.39  # on the check grid; inside the documented range
_BLOB_TABLE = 256  # samples of a blob's radial profile over [-pi, pi)
_BLOB_PHI = -np.pi + 2.0 * np.pi * np.arange(_BLOB_TABLE) / _BLOB_TABLE
_BLOB_K = np.arange(1.0, 6.0)[:, None]
_BLOB_WEIGHTS = np.array([0.4, 2.0**-0.6, 3.0**-0.6, 4.0**-0.6, 5.0**-0.6])
_TWO_PI = 2.0 * np.pi


def check_resolution(resolution) -> int:
  """Returns ``resolution`` as an int, or raises ValueError if it is not 16, 32, 64 or 128."""
  if (
    isinstance(resolution, (bool, np.bool_))
    or not isinstance(resolution, (int, np.integer))
    or int(resolution) not in RESOLUTIONS
  ):
    raise ValueError(
      f"synthetic dataset: resolution must be a power of two in {RESOLUTIONS}, got {resolution!r}."
    )
  return int(resolution)


def _check_split_index(split: str, index: int) -> None:
  if split not in _SPLIT_IDS:
    raise ValueError(
      f"synthetic dataset: split must be one of {sorted(_SPLIT_IDS)}, got {split!r}."
    )
  if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)) or index < 0:
    raise ValueError(f"synthetic dataset: index must be an integer >= 0, got {index!r}.")


# ----------------------------------------------------------------------------------------------
# Shapes: a star-shaped region around its centre, in units where the shape's size is 1.


class _Shape:
  """An object's geometry: unit profile + hole + placement (centre, rotation, scale)."""

  def __init__(self, rng, kinds_cumulative=None):
    # One draw picks the shape family (cumulative ``Layout.shapes``; the dataset's by default).
    kinds_cumulative = kinds_cumulative or _cumulative(LAYOUT.shapes)
    kind = bisect.bisect_right(kinds_cumulative, rng.random() * kinds_cumulative[-1])
    kind = min(kind, len(_SHAPE_KINDS) - 1)
    if kind == 0:
      self.kind = "ellipse"
      self.aspect = rng.uniform(0.45, 1.0)
      self.unit_area = np.pi * self.aspect
      self.inradius = self.aspect
    elif kind == 1:
      self.kind = "polygon"
      n = int(rng.integers(3, 9))
      jitter = rng.uniform(-0.2, 0.2, n)
      angles = -np.pi + _TWO_PI * (np.arange(n) + jitter) / n
      radii = np.ones(n) if rng.random() < 0.4 else rng.uniform(0.7, 1.0, n)
      self._set_polygon(angles, radii)
    elif kind == 2:
      self.kind = "star"
      n = int(rng.integers(4, 8))
      inner = rng.uniform(0.4, 0.65)
      angles = -np.pi + _TWO_PI * (np.arange(2 * n) + rng.uniform(-0.1, 0.1, 2 * n)) / (2 * n)
      radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner) * rng.uniform(0.9, 1.0, 2 * n)
      self._set_polygon(angles, radii)
    else:
      self.kind = "blob"
      # log r(phi) = sum_k a_k cos(k phi + p_k), k = 1..5, amplitudes falling with k.
      amp = rng.uniform(0.12, 0.4) * rng.uniform(-1.0, 1.0, 5) * _BLOB_WEIGHTS
      phase = rng.uniform(0.0, _TWO_PI, 5)
      r = np.exp(amp @ np.cos(_BLOB_K * _BLOB_PHI + phase[:, None]))
      r /= r.max()
      self.table_r2 = (r * r).astype(np.float32)
      self.unit_area = np.pi * float(np.mean(r * r))
      self.inradius = float(r.min())
    # Optional elliptic hole, strictly inside the shape (radius below its inradius).
    self.hole = None
    if rng.random() < 0.22:
      frac = rng.uniform(0.45, 0.7) if self.kind == "ellipse" else rng.uniform(0.4, 0.65)
      hr = frac * self.inradius
      h_aspect = 1.0 if self.kind != "ellipse" else rng.uniform(0.6, 1.0)
      off = (self.inradius - hr) * 0.5 * rng.uniform(-1.0, 1.0, 2)
      self.hole = (float(off[0]), float(off[1]), float(hr), float(h_aspect))
      self.unit_area -= np.pi * hr * hr * h_aspect
    self.theta = rng.uniform(0.0, _TWO_PI)
    self.cx = self.cy = 0.5
    self.scale = 0.25

  def _set_polygon(self, angles, radii):
    # Jitter can move the first vertex below -pi: wrap it, so that the angles ascend within
    # [-pi, pi) and each angular wedge is matched to its own edge in inside().
    angles = (angles + np.pi) % _TWO_PI - np.pi
    order = np.argsort(angles)
    angles, radii = angles[order], radii[order]
    px, py = radii * np.cos(angles), radii * np.sin(angles)
    self.vertices = (px, py)
    qx, qy = np.concatenate((px[1:], px[:1])), np.concatenate((py[1:], py[:1]))
    ex, ey = qx - px, qy - py
    length = np.hypot(ex, ey)
    nx, ny = ey / length, -ex / length  # outward normals (vertices are counter-clockwise)
    d = nx * px + ny * py
    self.angles = angles.astype(np.float32)
    self.nx, self.ny, self.d = (a.astype(np.float32) for a in (nx, ny, d))
    self.unit_area = float(0.5 * np.sum(px * qy - qx * py))
    self.inradius = float(d.min())

  def set_area(self, area: float) -> None:
    self.scale = float(np.sqrt(area / self.unit_area))

  def inside(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Boolean mask of the points (xx, yy) (image coordinates) inside the object."""
    c, s = np.cos(self.theta), np.sin(self.theta)
    inv = 1.0 / self.scale
    dx = xx - np.float32(self.cx)
    dy = yy - np.float32(self.cy)
    u = dx * np.float32(c * inv) + dy * np.float32(s * inv)
    v = dy * np.float32(c * inv) - dx * np.float32(s * inv)
    if self.kind == "ellipse":
      w = v * np.float32(1.0 / self.aspect)
      out = u * u + w * w <= 1.0
    elif self.kind == "blob":
      phi = np.arctan2(v, u)
      idx = ((phi + np.float32(np.pi)) * np.float32(_BLOB_TABLE / _TWO_PI)).astype(np.int32)
      np.minimum(idx, _BLOB_TABLE - 1, out=idx)  # phi == pi
      out = u * u + v * v <= self.table_r2[idx]
    else:
      phi = np.arctan2(v, u)
      seg = np.searchsorted(self.angles, phi, side="right") - 1  # -1 wraps to the last edge
      out = u * self.nx[seg] + v * self.ny[seg] <= self.d[seg]
    if self.hole is not None:
      hx, hy, hr, ha = self.hole
      a = u - np.float32(hx)
      b = (v - np.float32(hy)) * np.float32(1.0 / ha)
      out &= a * a + b * b > np.float32(hr * hr)
    return out


def _unit_extent(shape: _Shape) -> Tuple[float, float, float, float]:
  """The shape's bounding box around its centre, in units of its scale, rotation included:
  (x_min, x_max, y_min, y_max). Exact for polygons and stars (their vertices), from the
  boundary sampled finely enough for ellipses and blobs (whose boundary is piecewise constant in
  radius over each table bin, so both ends of each bin are taken)."""
  if shape.kind == "ellipse":
    phi = np.linspace(-np.pi, np.pi, 1024)
    u, v = np.cos(phi), shape.aspect * np.sin(phi)
  elif shape.kind == "blob":
    r = np.sqrt(shape.table_r2.astype(np.float64))
    ends = np.concatenate((_BLOB_PHI, _BLOB_PHI + _TWO_PI / _BLOB_TABLE))
    u, v = np.tile(r, 2) * np.cos(ends), np.tile(r, 2) * np.sin(ends)
  else:
    u, v = shape.vertices
  c, s = np.cos(shape.theta), np.sin(shape.theta)
  x, y = u * c - v * s, u * s + v * c
  eps = 1e-3
  return float(x.min()) - eps, float(x.max()) + eps, float(y.min()) - eps, float(y.max()) + eps


def _place_object(rng, shape: _Shape, margin: float) -> None:
  """Chooses size and position: the visible area (on the check grid) is in range and the whole
  object keeps ``margin`` from every border (at any resolution: the extent is measured in
  continuous coordinates)."""
  gx, gy = textures.grid(_CHECK_GRID)
  x0, x1, y0, y1 = _unit_extent(shape)
  room = 1.0 - 2.0 * margin
  max_scale = room / max(x1 - x0, y1 - y0)
  target = rng.uniform(0.10, 0.38)
  for _ in range(8):
    shape.set_area(target)
    shape.scale = min(shape.scale, max_scale)
    # Centres for which the extent stays inside [margin, 1 - margin] on both axes.
    lo_x, lo_y = margin - shape.scale * x0, margin - shape.scale * y0
    shape.cx = rng.uniform(lo_x, max(lo_x, 1.0 - margin - shape.scale * x1))
    shape.cy = rng.uniform(lo_y, max(lo_y, 1.0 - margin - shape.scale * y1))
    area = np.count_nonzero(shape.inside(gx, gy)) / gx.size
    if _ACCEPT_LO <= area <= _ACCEPT_HI:
      return
    target *= 0.9 if area > _ACCEPT_HI else 1.1
  # Last resort: the largest scale that fits, centred in the free room, shrunk into the range.
  shape.scale = max_scale
  shape.cx = 0.5 - 0.5 * shape.scale * (x0 + x1)
  shape.cy = 0.5 - 0.5 * shape.scale * (y0 + y1)
  while np.count_nonzero(shape.inside(gx, gy)) / gx.size > _ACCEPT_HI:
    shape.scale *= 0.95


@functools.lru_cache(maxsize=None)
def _cumulative(weights: Tuple[float, ...]) -> Tuple[float, ...]:
  """Texture-family weights as the cumulative sums ``textures.texture`` draws from."""
  return tuple(np.cumsum(weights).tolist())


# ----------------------------------------------------------------------------------------------
# Public API.


def _rng(split: str, index: int, seed: int, stream: int = 0):
  _check_split_index(split, index)
  if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
    raise ValueError(f"synthetic dataset: seed must be an integer >= 0, got {seed!r}.")
  entropy = [int(seed), _SPLIT_IDS[split], int(index)] + ([int(stream)] if stream else [])
  return np.random.default_rng(np.random.SeedSequence(entropy))


def render_layers(
  split: str, index: int, resolution: int, seed: int = 0, layout: Layout = LAYOUT
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns the example's layers: (background uint8 [R,R,3], foreground uint8 [R,R,3],
  mask uint8 [R,R] in {0, 1}); the image is ``where(mask[..., None], foreground, background)``."""
  n = check_resolution(resolution)
  rng = _rng(split, index, seed, layout.stream)
  colors = textures.random_colors(rng, 12)
  palette = colors[:4]  # the scene's palette, shared by background and object

  # Object geometry.
  shape = _Shape(rng, _cumulative(tuple(layout.shapes)))
  _place_object(rng, shape, layout.margin)
  mask = shape.inside(*textures.grid(n))

  # Background layer.
  bg_cols = palette[rng.permutation(4)[:3]]
  bg_families = _cumulative(tuple(layout.bg_textures))
  bg = textures.texture(rng, n, 0.5, 0.5, bg_cols, bg_families, 0.5)
  if rng.random() < 0.3:  # two regions split by a wavy horizon
    other = textures.texture(rng, n, 0.5, 0.5, palette[rng.permutation(4)[:3]], bg_families, 0.5)
    xx, yy = textures.grid(n)
    h = rng.uniform(0.25, 0.75)
    wave = np.float32(rng.uniform(0.0, 0.12)) * np.sin(
      xx * np.float32(rng.uniform(3.0, 12.0)) + np.float32(rng.uniform(0, _TWO_PI))
    )
    region = (yy - h - wave) > (xx - 0.5) * np.float32(rng.uniform(-0.6, 0.6))
    bg = cv2.copyTo(other, region.astype(np.uint8), bg)
  if rng.random() < 0.5:
    bg = textures.lighting(rng, bg, n, rng.uniform(0.2, 0.7))
  if rng.random() < 0.75:
    bg = np.ascontiguousarray(bg, dtype=np.float32)
    textures.distractors(rng, bg, n, palette, colors[7:])
  if rng.random() < 0.4:
    bg = textures.grain(rng, bg, n, rng.uniform(0.01, 0.06))

  # Foreground layer: colours shared with the background palette about half of the time.
  fg_cols = colors[4:7]
  share = rng.random(3) < 0.5
  picks = palette[rng.integers(0, 4, 3)] + rng.uniform(-0.06, 0.06, (3, 3)).astype(np.float32)
  fg_cols = np.where(share[:, None], picks, fg_cols).astype(np.float32)
  size = shape.scale
  fg = textures.texture(
    rng, n, shape.cx, shape.cy, fg_cols, _cumulative(tuple(layout.fg_textures)), size
  )
  if rng.random() < 0.35:  # shaded like a lit solid: bright spot, darker towards the rim
    xx, yy = textures.grid(n)
    hx = shape.cx + size * rng.uniform(-0.5, 0.5)
    hy = shape.cy + size * rng.uniform(-0.5, 0.5)
    r2 = ((xx - np.float32(hx)) ** 2 + (yy - np.float32(hy)) ** 2) * np.float32(1.0 / size**2)
    shade = 1.15 - np.float32(rng.uniform(0.3, 0.7)) * np.minimum(r2, 1.5)
    fg = cv2.multiply(fg, textures.gray3(shade))
  elif rng.random() < 0.4:
    fg = textures.lighting(rng, fg, n, rng.uniform(0.3, 0.9))
  if rng.random() < layout.rim_probability:
    fg = textures.rim_shading(rng, fg, mask, n)
  if rng.random() < 0.3:
    fg = textures.grain(rng, fg, n, rng.uniform(0.01, 0.05))

  return textures.unit_to_uint8(bg), textures.unit_to_uint8(fg), mask.astype(np.uint8)


def render_example(
  split: str, index: int, resolution: int, seed: int = 0, layout: Layout = LAYOUT
) -> Tuple[np.ndarray, np.ndarray]:
  """Renders one example: (image uint8 [R,R,3], mask uint8 [R,R] with values in {0, 1}).

  Deterministic in (seed, split, index); ``split`` is 'train' or 'test' (disjoint streams);
  ``resolution`` is 16, 32, 64 or 128 (ValueError otherwise).
  """
  bg, fg, mask = render_layers(split, index, resolution, seed, layout)
  image = cv2.copyTo(fg, mask, bg)  # == np.where(mask[..., None] != 0, fg, bg)
  return image, mask


def generate(
  split: str, start: int, count: int, resolution: int, seed: int = 0, layout: Layout = LAYOUT
) -> Dict[str, np.ndarray]:
  """Renders examples ``start .. start + count - 1``: {'image': uint8 [count,R,R,3],
  'mask': uint8 [count,R,R]}."""
  n = check_resolution(resolution)
  _check_split_index(split, start)
  if not isinstance(count, (int, np.integer)) or count < 0:
    raise ValueError(f"synthetic dataset: count must be an integer >= 0, got {count!r}.")
  images = np.empty((count, n, n, 3), np.uint8)
  masks = np.empty((count, n, n), np.uint8)
  for i in range(count):
    images[i], masks[i] = render_example(split, int(start) + i, n, seed, layout)
  return {"image": images, "mask": masks}
