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


def contrast_jitter(key: Array, background: Array, strength: float) -> Array:
  """Background contrast jitter: per sample ``c = 1 + s * (2u - 1)``; per sample and channel
  ``clip((B - mean) * c + mean, min(B), max(B))`` with spatial mean / min / max.

  Gradients flow through it (including through the statistics)."""
  if strength == 0:
    return background
  u = jax.random.uniform(key, (background.shape[0], 1, 1, 1))
  c = 1.0 + strength * (2.0 * u - 1.0)
  mean = jnp.mean(background, axis=(1, 2), keepdims=True)
  lo = jnp.min(background, axis=(1, 2), keepdims=True)
  hi = jnp.max(background, axis=(1, 2), keepdims=True)
  return jnp.clip((background - mean) * c + mean, lo, hi)


def perturb(key: Array, layers: Dict[str, Array], *, shift_fraction: float,
            bg_contrast_jitter: float) -> Tuple[Dict[str, Array], Array]:
  """Applies the random foreground shift (F and m together) and the background contrast jitter.

  Returns the perturbed layers (``background``, ``foreground``, ``mask``) and the shifts [B, 2].
  The shift is drawn independently of the latent, after the generator pass.
  """
  shift_key, jitter_key = jax.random.split(key)
  batch, resolution = layers["foreground"].shape[0], layers["foreground"].shape[1]
  s = max_shift(resolution, shift_fraction)
  shifts = sample_shifts(shift_key, batch, resolution, shift_fraction)
  fg_and_mask = jnp.concatenate([layers["foreground"], layers["mask"]], axis=-1)
  moved = shift_images(fg_and_mask, shifts, s)
  out = {
      "background": contrast_jitter(jitter_key, layers["background"], bg_contrast_jitter),
      "foreground": moved[..., :3],
      "mask": moved[..., 3:],
  }
  return out, shifts
