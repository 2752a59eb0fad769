"""Pure image transforms and the hashing that makes crops and epochs deterministic.

Tested against NumPy references; see docs/data.md for the training and evaluation transforms.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from layered_gan_jax.data.config import DEFAULT_ORG_TO_CROP


def crop_size(resolution: int, org_to_crop: float = DEFAULT_ORG_TO_CROP) -> int:
  """Side of the resized square the random crop is taken from (round half up)."""
  return max(int(resolution), int(math.floor(org_to_crop * resolution + 0.5)))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [size, size, 3]; PIL BILINEAR (antialiased when shrinking)."""
  if image.shape[0] == size and image.shape[1] == size:
    return image
  pil = Image.fromarray(np.ascontiguousarray(image))
  return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
  """float [H, W] in [0, 1] -> float32 [size, size], same filter as the images (not binarized)."""
  mask = np.asarray(mask, dtype=np.float32)
  if mask.shape == (size, size):
    return mask
  pil = Image.fromarray(np.ascontiguousarray(mask), mode="F")
  return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] via x / 127.5 - 1."""
  return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
  z = x + _GOLDEN
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def _hash(*parts) -> np.ndarray:
  """A 64-bit hash of integer arrays/scalars (broadcast), elementwise."""
  with np.errstate(over="ignore"):
    h = np.zeros((), np.uint64)
    for p in parts:
      if isinstance(p, (int, np.integer)):
        p = np.uint64(int(p) % (1 << 64))
      else:  # Integer arrays: reinterpret the two's complement bits.
        p = np.ascontiguousarray(p, dtype=np.int64).view(np.uint64)
      h = _splitmix64(h ^ p)
    return h


def crop_offsets(seed: int, epochs, indices, max_offset: int) -> np.ndarray:
  """int64 [n, 2] (y, x) crop offsets, each uniform in [0, max_offset], a pure function of
  (seed, epoch, global example index)."""
  epochs, indices = np.broadcast_arrays(np.asarray(epochs), np.asarray(indices))
  n = np.uint64(max_offset + 1)
  oy = _hash(seed, epochs, indices, 1) % n
  ox = _hash(seed, epochs, indices, 2) % n
  return np.stack([oy, ox], axis=-1).astype(np.int64)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the training examples in one epoch of the stream, shared by all processes."""
  # The constant 0 was once the process index: kept so that one-process streams are unchanged.
  rng = np.random.default_rng([seed % (1 << 63), epoch, 0, 0x5EED])
  return rng.permutation(num_examples)


def train_transform(
  image: np.ndarray, resolution: int, size: int, offset: np.ndarray | None
) -> np.ndarray:
  if offset is None:
    return resize_square(image, resolution)
  resized = resize_square(image, size)
  oy, ox = int(offset[0]), int(offset[1])
  return resized[oy : oy + resolution, ox : ox + resolution]
