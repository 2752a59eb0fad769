"""The mix of several training sources: which source each position of the training stream
draws from, and which position of that source's own stream it takes.

The stream is dealt in blocks of ``BLOCK`` positions. Each block holds ``counts[j]`` positions
of source j (``BLOCK`` split by the weights, largest remainders first) in an order drawn from
``(seed, block)``. So a source's share of any whole number of blocks is its weight to within
``1 / BLOCK``, and the source and rank of every position are a pure function of (weights,
seed, position): resumption and the processes' rows of a global batch need no replay.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

BLOCK = 1024


def block_counts(weights: Sequence[float], block: int = BLOCK) -> np.ndarray:
  """int64 [J]: the positions of each source in one block, summing to ``block``; each within
  1 of ``block * w_j / sum(w)`` (the largest remainders round up, ties to the first source)."""
  w = np.asarray(weights, np.float64)
  if w.ndim != 1 or not len(w) or not np.all(w > 0):
    raise ValueError(f"weights must be positive numbers, got {list(weights)}")
  exact = block * w / w.sum()
  counts = np.floor(exact).astype(np.int64)
  order = np.argsort(-(exact - counts), kind="stable")
  counts[order[: block - int(counts.sum())]] += 1
  return counts


def source_seed(seed: int, j: int) -> int:
  """The seed of source j's own stream (its epoch permutations and crops) in a mix."""
  state = np.random.SeedSequence([seed % (1 << 63), j, 0x50C]).generate_state(1, np.uint64)
  return int(state[0] >> np.uint64(1))


class Mixture:
  """Where the positions of a mixed stream come from; see the module's docstring."""

  def __init__(self, weights: Sequence[float], seed: int, block: int = BLOCK):
    self.counts = block_counts(weights, block)
    self.block = block
    self.seed = seed
    self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    self._lock = threading.Lock()

  def _deal(self, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, rank within the block among that source's positions) of block b's positions."""
    with self._lock:
      if b not in self._blocks:
        if len(self._blocks) > 8:
          self._blocks.pop(min(self._blocks))
        rng = np.random.default_rng([self.seed % (1 << 63), b, 0x313])
        labels = rng.permutation(np.repeat(np.arange(len(self.counts)), self.counts))
        ranks = np.empty(self.block, np.int64)
        for j in range(len(self.counts)):
          ranks[labels == j] = np.arange(self.counts[j])
        self._blocks[b] = (labels, ranks)
      return self._blocks[b]

  def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 source, int64 position in that source's own stream) of stream ``positions``."""
    positions = np.asarray(positions, np.int64)
    if len(self.counts) == 1:
      return np.zeros(positions.shape, np.int32), positions
    blocks, offsets = positions // self.block, positions % self.block
    labels = np.empty(positions.shape, np.int32)
    ranks = np.empty(positions.shape, np.int64)
    for b in np.unique(blocks):
      sel = blocks == b
      block_labels, block_ranks = self._deal(int(b))
      labels[sel] = block_labels[offsets[sel]]
      ranks[sel] = b * self.counts[labels[sel]] + block_ranks[offsets[sel]]
    return labels, ranks
