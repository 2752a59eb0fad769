"""Alpha compositing and the perturbations of the layered GAN (pure functions of arrays + a key).

Layouts are NHWC. Perturbations are applied to the training generator's layers only, never to
the EMA generator or at inference.
"""

from typing import Dict, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array


def composite(background: Array, foreground: Array, mask: Array) -> Array:
  """``(1 - m) * B + m * F``."""
  return (1.0 - mask) * background + mask * foreground


def max_shift(resolution: int, shift_fraction: float) -> int:
  """The largest |shift| in pixels: ``round(J * R)``."""
  return int(round(shift_fraction * resolution))


def sample_shifts(key: Array, batch: int, resolution: int, shift_fraction: float) -> Array:
  """Integer shifts [B, 2] as (dy, dx): ``round(J * R * (2u - 1))``, u ~ U[0, 1)."""
  u = jax.random.uniform(key, (batch, 2))
  return jnp.round(shift_fraction * resolution * (2.0 * u - 1.0)).astype(jnp.int32)


def shift_images(x: Array, shifts: Array, max_abs_shift: int) -> Array:
  """Translates each image by its integer (dy, dx): ``out[y, x] = in[y - dy, x - dx]``.

  What leaves the frame is dropped and the uncovered band is zero (no wrap, no interpolation).
  Vectorized: pad by ``max_abs_shift`` and take one dynamic slice per sample under vmap.
  ``shifts`` must lie in [-max_abs_shift, max_abs_shift] (values outside are clamped by XLA).
  """
  if max_abs_shift == 0:
    return x
  p = max_abs_shift
  padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w, c = x.shape[1:]

  def one(img, s):
    return jax.lax.dynamic_slice(img, (p - s[0], p - s[1], 0), (h, w, c))

  return jax.vmap(one)(padded, shifts)


def contrast_factors(key: Array, batch: int, strength: float) -> Array:
  """Per-sample contrast factors ``c = 1 + s * (2u - 1)``, u ~ U[0, 1), shape [B, 1, 1, 1]."""
  u = jax.random.uniform(key, (batch, 1, 1, 1))
  return 1.0 + strength * (2.0 * u - 1.0)


def contrast_jitter(background: Array, factors: Array) -> Array:
  """Background contrast jitter with given per-sample factors ``c`` [B, 1, 1, 1]: per sample
  and channel ``clip((B - mean) * c + mean, min(B), max(B))`` with spatial mean / min / max.

  Gradients flow through it (including through the statistics)."""
  mean = jnp.mean(background, axis=(1, 2), keepdims=True)
  lo = jnp.min(background, axis=(1, 2), keepdims=True)
  hi = jnp.max(background, axis=(1, 2), keepdims=True)
  return jnp.clip((background - mean) * factors + mean, lo, hi)


def sample_perturbation(
  key: Array, batch: int, resolution: int, *, shift_fraction: float, bg_contrast_jitter: float
) -> Dict[str, Array]:
  """The random draws of one perturbation: integer ``shifts`` [B, 2] (dy, dx) and the contrast
  ``factors`` [B, 1, 1, 1]. Drawn independently of the latent, after the generator pass."""
  shift_key, jitter_key = jax.random.split(key)
  return {
    "shifts": sample_shifts(shift_key, batch, resolution, shift_fraction),
    "factors": contrast_factors(jitter_key, batch, bg_contrast_jitter),
  }


def apply_perturbation(
  layers: Dict[str, Array],
  draws: Dict[str, Array],
  *,
  shift_fraction: float,
  bg_contrast_jitter: float,
) -> Dict[str, Array]:
  """Moves the foreground and mask together by ``draws['shifts']`` and jitters the background's
  contrast by ``draws['factors']`` (skipped when ``bg_contrast_jitter`` is 0). Returns the
  perturbed ``background``, ``foreground`` and ``mask``."""
  resolution = layers["foreground"].shape[1]
  fg_and_mask = jnp.concatenate([layers["foreground"], layers["mask"]], axis=-1)
  moved = shift_images(fg_and_mask, draws["shifts"], max_shift(resolution, shift_fraction))
  background = layers["background"]
  if bg_contrast_jitter:
    background = contrast_jitter(background, draws["factors"])
  return {"background": background, "foreground": moved[..., :3], "mask": moved[..., 3:]}


def perturb(
  key: Array, layers: Dict[str, Array], *, shift_fraction: float, bg_contrast_jitter: float
) -> Tuple[Dict[str, Array], Array]:
  """Draws and applies the perturbation (``sample_perturbation`` then ``apply_perturbation``).

  Returns the perturbed layers (``background``, ``foreground``, ``mask``) and the shifts [B, 2].
  """
  batch, resolution = layers["foreground"].shape[0], layers["foreground"].shape[1]
  kw = dict(shift_fraction=shift_fraction, bg_contrast_jitter=bg_contrast_jitter)
  draws = sample_perturbation(key, batch, resolution, **kw)
  return apply_perturbation(layers, draws, **kw), draws["shifts"]
