"""Drawing from a frozen generator (the EMA generator of a run): the one way the trainer's
sample grids, FID / KID, the evaluate mode's generated masks, the sample mode and the distilled
segmenter's training pairs turn latents into layers.

Each caller keeps its own key schedule (which key draws the latents, which the noise), so the
numbers each one has always produced stay as they were; what they share is the generator's
call (:func:`layers`), the latents (:func:`latents`) and the draw of :func:`draw`
(``split(key) -> (latents, noise)``).

Layers are a dict: ``background`` [B, R, R, 3] and ``foreground`` [B, R, R, 3] in about
[-1, 1], ``mask`` [B, R, R, 1] in [0, 1]; composites are [B, R, R, 3].
"""

import functools
from typing import Optional, Tuple

import jax
import numpy as np

from layered_gan_jax.nets import compositing


def latents(key, num: int, style_dim: int) -> jax.Array:
  """Standard normal latents [num, style_dim]."""
  return jax.random.normal(key, (num, style_dim))


def layers(
  generator, params, z, noise_key, *, stage: int, alpha, truncation=None, w_avg=None
) -> dict:
  """The generator's layers for latents ``z`` at ``stage`` / ``alpha``, its noise maps drawn
  from ``noise_key``; with ``truncation``, styles pulled towards ``w_avg``
  (``generator.mean_styles``)."""
  return generator.apply(
    {"params": params},
    z,
    stage=stage,
    alpha=alpha,
    truncation=truncation,
    w_avg=w_avg,
    rngs={"noise": noise_key},
  )


def draw(generator, params, key, num: int, *, stage: int, alpha) -> dict:
  """Layers of ``num`` fresh latents: ``key`` splits into the latents' key and the noise's."""
  k_z, k_noise = jax.random.split(key)
  return layers(
    generator, params, latents(k_z, num, generator.style_dim), k_noise, stage=stage, alpha=alpha
  )


def composite(drawn: dict) -> jax.Array:
  """The unshifted composite of drawn layers."""
  return compositing.composite(drawn["background"], drawn["foreground"], drawn["mask"])


@functools.partial(jax.jit, static_argnames=("generator", "stage", "batch"))
def _masks_and_composites(generator, stage: int, batch: int, params, key, alpha):
  drawn = draw(generator, params, key, batch, stage=stage, alpha=alpha)
  return drawn["mask"][..., 0], composite(drawn)


def masks_and_composites(
  gan, num: int, seed: int, batch: int = 64, params: Optional[dict] = None
) -> Tuple[np.ndarray, np.ndarray]:
  """Masks [num, R, R] in [0, 1] and composites [num, R, R, 3] of the EMA generator of ``gan``
  (a ``loading.LoadedGAN``; ``params`` replaces its EMA parameters) on ``num`` latents drawn
  from ``seed``, ``batch`` at a time (batch ``i`` from the ``i``-th split of the key): the same
  latents for every checkpoint of a model, one compiled program per generator, stage and
  batch."""
  params = gan.ema_params if params is None else params
  masks, composites = [], []
  key = jax.random.PRNGKey(seed)
  done = 0
  while done < num:
    key, sub = jax.random.split(key)
    mask, comp = jax.device_get(
      _masks_and_composites(gan.generator, gan.stage, batch, params, sub, np.float32(gan.alpha))
    )
    n = min(batch, num - done)
    masks.append(np.asarray(mask)[:n])
    composites.append(np.asarray(comp)[:n])
    done += n
  return np.concatenate(masks), np.concatenate(composites)
