"""Image grids and PNG files (numpy + PIL; no JAX)."""

from typing import Sequence

import numpy as np
from PIL import Image

from layered_gan_jax import files


def to_uint8(x: np.ndarray, value_range=(-1.0, 1.0)) -> np.ndarray:
  """Images in ``value_range`` -> uint8; a single channel is repeated to RGB."""
  x = np.asarray(x, np.float32)
  lo, hi = value_range
  x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return np.round(x * 255.0).astype(np.uint8)


def grid(rows: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """Rows of uint8 images [N, H, W, 3] -> one uint8 image; row r, column n = rows[r][n]."""
  n, h, w = rows[0].shape[:3]
  out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
  for r, row in enumerate(rows):
    for i in range(n):
      y, x = pad + r * (h + pad), pad + i * (w + pad)
      out[y : y + h, x : x + w] = row[i]
  return out


def save_png(path: str, image: np.ndarray) -> None:
  """Writes whole or not at all (``files.write_png``), locally or on an object store."""
  files.write_png(path, Image.fromarray(np.asarray(image)))


def overlay(image_uint8: np.ndarray, mask: np.ndarray, color=(255, 0, 0), opacity=0.5):
  """Tints the masked pixels of an RGB image."""
  m = (np.asarray(mask) > 0.5)[..., None]
  tint = np.asarray(color, np.float32)
  blended = image_uint8.astype(np.float32) * (1 - opacity) + tint * opacity
  return np.where(m, blended, image_uint8).astype(np.uint8)


def layer_rows(layers: dict, shifted_composite: np.ndarray = None) -> list:
  """The standard sample grid rows: composite, background, foreground, mask, masked
  foreground (on black) and, if given, the shifted composite."""
  bg, fg, m = (np.asarray(layers[k]) for k in ("background", "foreground", "mask"))
  comp = (1 - m) * bg + m * fg
  rows = [
    to_uint8(comp),
    to_uint8(bg),
    to_uint8(fg),
    to_uint8(m, (0.0, 1.0)),
    to_uint8(m * fg + (1 - m) * -1.0),
  ]
  if shifted_composite is not None:
    rows.append(to_uint8(shifted_composite))
  return rows
