"""Losses: WGAN-GP critic loss with drift, generator loss with the two mask losses, and the
encoders' reconstruction loss. Pure functions; critics are passed as ``images -> scores``."""

from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array
CriticFn = Callable[[Array], Array]

# Inside the square root of the gradient norm, so that its derivative is finite at zero.
GP_NORM_EPS = 1e-12


def interpolation_coefficients(key: Array, batch: int) -> Array:
  """The gradient penalty's per-sample ``e ~ U[0, 1)``, shape [B, 1, 1, 1]."""
  return jax.random.uniform(key, (batch, 1, 1, 1))


def gradient_penalty(
  critic_fn: CriticFn, real: Array, fake: Array, e: Array, remat: bool = False
) -> Array:
  """``mean_b (||grad_x D(x_hat)||_2 - 1)^2`` with ``x_hat = e * real + (1 - e) * fake`` and
  per-sample coefficients ``e`` [B, 1, 1, 1] (see ``interpolation_coefficients``). The gradient
  is a nested ``jax.grad`` of ``sum(D(x_hat))``, so the penalty itself can be differentiated
  with respect to the critic's parameters. With ``remat``, that gradient's intermediates (the
  critic's activations and their backward pass) are not kept for the outer derivative but
  computed again during it (``jax.checkpoint``): the same values."""
  x_hat = e.astype(real.dtype) * real + (1.0 - e.astype(real.dtype)) * fake
  input_grad = jax.grad(lambda x: jnp.sum(critic_fn(x)))
  if remat:
    input_grad = jax.checkpoint(input_grad)
  grads = input_grad(x_hat)
  sq = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1)
  return jnp.mean(jnp.square(jnp.sqrt(sq + GP_NORM_EPS) - 1.0))


def critic_loss(
  critic_fn: CriticFn,
  real: Array,
  fake: Array,
  e: Array,
  *,
  gp_weight: float = 10.0,
  drift_weight: float = 0.001,
  remat_penalty: bool = False,
) -> Tuple[Array, Dict[str, Array]]:
  """``mean D(fake) - mean D(real) + drift * mean D(real)^2 + gp_weight * GP``.

  ``fake`` must already be the perturbed composite with ``stop_gradient`` applied by the caller;
  ``e`` are the gradient penalty's interpolation coefficients. Real and fake batches are scored
  in separate critic calls (the minibatch-stddev statistic is per call, as in the reference)."""
  d_real = critic_fn(real)
  d_fake = critic_fn(fake)
  drift = jnp.mean(jnp.square(d_real))
  gp = gradient_penalty(critic_fn, real, fake, e, remat=remat_penalty)
  wasserstein = jnp.mean(d_real) - jnp.mean(d_fake)
  loss = -wasserstein + drift_weight * drift + gp_weight * gp
  return loss, {
    "critic_loss": loss,
    "wasserstein": wasserstein,
    "gradient_penalty": gp,
    "drift": drift,
    "d_real": jnp.mean(d_real),
    "d_fake": jnp.mean(d_fake),
  }


def mask_size_loss(mask: Array, eta: float) -> Array:
  """``mean_b max(0, eta - mean_hw(m_b))``: penalises masks covering less than eta."""
  coverage = jnp.mean(mask.reshape(mask.shape[0], -1), axis=1)
  return jnp.mean(jax.nn.relu(eta - coverage))


def mask_max_size_loss(mask: Array, eta_max: float) -> Array:
  """``mean_b max(0, mean_hw(m_b) - eta_max)``: penalises masks covering more than eta_max.

  Not in the paper (off by default, ``eta_max = 1``): an option against the inverted solution,
  where the object generator paints the scene and the background generator the object.
  """
  coverage = jnp.mean(mask.reshape(mask.shape[0], -1), axis=1)
  return jnp.mean(jax.nn.relu(coverage - eta_max))


def mask_binary_loss(mask: Array) -> Array:
  """``mean min(m, 1 - m)``: pushes every mask pixel towards 0 or 1."""
  return jnp.mean(jnp.minimum(mask, 1.0 - mask))


def generator_loss(
  d_fake: Array,
  shifted_mask: Array,
  *,
  eta: float,
  size_weight: float,
  binary_weight: float,
  eta_max: float = 1.0,
) -> Tuple[Array, Dict[str, Array]]:
  """``-mean D(perturbed composite) + gamma1 * L_size + gamma2 * L_binary`` on the shifted mask.

  With ``eta_max < 1`` the size term also holds ``mask_max_size_loss`` (same weight gamma1).
  """
  size = mask_size_loss(shifted_mask, eta)
  if eta_max < 1.0:
    size = size + mask_max_size_loss(shifted_mask, eta_max)
  binary = mask_binary_loss(shifted_mask)
  adversarial = -jnp.mean(d_fake)
  loss = adversarial + size_weight * size + binary_weight * binary
  return loss, {
    "generator_loss": loss,
    "g_adversarial": adversarial,
    "mask_size_loss": size,
    "mask_binary_loss": binary,
  }


def mask_statistics(mask: Array, near: float = 0.1) -> Dict[str, Array]:
  """Mean coverage and the fraction of near-binary pixels (within ``near`` of 0 or 1)."""
  binary = jnp.logical_or(mask < near, mask > 1.0 - near)
  return {"mask_coverage": jnp.mean(mask), "mask_binary_fraction": jnp.mean(binary)}


def reconstruction_loss(
  recon: Array,
  target: Array,
  recon_features: Array,
  target_features: Array,
  *,
  feature_weight: float = 1.0,
) -> Tuple[Array, Dict[str, Array]]:
  """``|x_E - x|_1 + |D_feat(x_E) - D_feat(x)|_2^2``, each a per-sample sum averaged over the
  batch would scale with resolution, so both are means over elements (documented choice)."""
  l1 = jnp.mean(jnp.abs(recon - target))
  feat = jnp.mean(jnp.square(recon_features - target_features))
  loss = l1 + feature_weight * feat
  return loss, {"encoder_loss": loss, "l1": l1, "feature_loss": feat}
