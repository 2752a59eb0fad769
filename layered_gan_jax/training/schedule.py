"""The progressive-growing schedule: which stage, fade-in alpha, batch and learning rate at an
iteration. Pure Python, derived from the config alone, so the data position and the stage of a
resumed run follow from the step count.

Reference semantics: each resolution gets ``2 * phase_images`` real images; in the first half
the new block fades in (``alpha = min(1, (images_done_in_stage + 1) / phase_images)``), in the
second half ``alpha = 1``. The first resolution has no fade-in. The last resolution runs until
``max_steps``.
"""

import dataclasses
import math
from typing import List, Tuple

from layered_gan_jax.nets.architecture import parse_resolution_map, stage_of


@dataclasses.dataclass(frozen=True)
class Stage:
  stage: int  # Generator/critic stage (resolution = 4 * 2**stage).
  resolution: int
  batch_size: int  # Global batch.
  lr: float
  start_step: int  # First iteration of this stage.
  num_steps: int  # Iterations in this stage (the last stage: until max_steps).
  fade_images: int  # Images over which alpha ramps to 1 (0 = no fade-in).

  def alpha(self, step: int) -> float:
    if self.fade_images <= 0:
      return 1.0
    done = (step - self.start_step) * self.batch_size
    return min(1.0, (done + 1) / self.fade_images)


class Schedule:
  """Stages from ``train.start_resolution`` to ``train.resolution``, capped at ``max_steps``."""

  def __init__(self, train_config, channels=None):
    t = train_config
    self._channels = tuple(channels) if channels is not None else None
    batches = parse_resolution_map(t.batch_sizes, int)
    lrs = parse_resolution_map(t.lrs, float)
    first, last = stage_of(t.start_resolution), stage_of(t.resolution)
    self.max_steps = int(t.max_steps)
    self.stages: List[Stage] = []
    step = 0
    for s in range(first, last + 1):
      res = 4 * 2**s
      batch = int(batches.get(res, t.batch_size))
      fade = 0 if s == first else int(t.phase_images)
      n = math.ceil(2 * t.phase_images / batch) if s < last else max(self.max_steps - step, 0)
      self.stages.append(Stage(s, res, batch, float(lrs.get(res, t.lr)), step, n, fade))
      step += n

  def at(self, step: int) -> Tuple[Stage, float]:
    """The stage and fade-in alpha of iteration ``step``."""
    for st in self.stages:
      if step < st.start_step + st.num_steps or st is self.stages[-1]:
        return st, st.alpha(step)
    raise AssertionError("unreachable")

  def images_seen(self, step: int) -> int:
    """Real images consumed by iterations [0, step)."""
    total = 0
    for st in self.stages:
      n = min(max(step - st.start_step, 0), st.num_steps if st is not self.stages[-1] else step)
      total += n * st.batch_size
    return total

  def relative_cost(self, stage: Stage) -> float:
    """An iteration's cost relative to others, FLOP-scaled: the batch times the sum over the
    resolutions built (4 px .. the stage's) of resolution^2 x channels^2 (a 3x3 conv's FLOPs;
    the generators and the critic alike). Without channels: batch x resolution^2."""
    if self._channels is None:
      return float(stage.batch_size * stage.resolution**2)
    return float(
      stage.batch_size
      * sum((4 * 2**i) ** 2 * self._channels[i] ** 2 for i in range(stage.stage + 1))
    )

  def eta(
    self, step: int, seconds_per_step: float, compile_seconds: float = 0.0
  ) -> Tuple[float, bool]:
    """(Seconds left after iteration ``step``, whether later stages were FLOP-scaled): the
    iterations left in the current stage at ``seconds_per_step`` (its measured time), plus each
    later stage's iterations at that time scaled by :meth:`relative_cost` and its compile at
    ``compile_seconds`` (the latest measured)."""
    current = self.at(max(step - 1, 0))[0]
    total, scaled = 0.0, False
    for st in self.stages:
      end = min(st.start_step + st.num_steps, self.max_steps)
      if st is self.stages[-1]:
        end = self.max_steps
      left = max(end - max(step, st.start_step), 0)
      if not left or st.stage < current.stage:
        continue
      ratio = 1.0 if st is current else self.relative_cost(st) / self.relative_cost(current)
      scaled = scaled or st is not current
      total += left * seconds_per_step * ratio + (0.0 if st is current else compile_seconds)
    return total, scaled
