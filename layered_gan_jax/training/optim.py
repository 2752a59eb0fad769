"""Adam with the reference's per-parameter semantics, and the learning-rate groups.

PyTorch's Adam keeps a step count per parameter and skips parameters that got no gradient (in
progressive growing, the blocks of later stages and the previous stage's head after the fade-in).
optax's ``adam`` keeps one global count: a block that becomes active late would then take its
first steps with the bias correction of a long-running optimizer (about 10x too large with
b2 = 0.99). Here every parameter array keeps its own count and moments, and only the arrays that
are *active* in the current (stage, alpha) are updated; the others keep their state unchanged.
"""

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any

_INDEXED = re.compile(r"^(block|head|from_rgb)_(\d+)$")


class AdamState(NamedTuple):
  count: PyTree  # int32 scalar per parameter array
  mu: PyTree
  nu: PyTree


def make_adam(train_config):
  """The GAN's optimizer: ``per_parameter_adam`` with the config's betas and epsilon."""
  return per_parameter_adam(train_config.adam_b1, train_config.adam_b2, train_config.adam_eps)


def per_parameter_adam(
  b1: float = 0.0, b2: float = 0.99, eps: float = 1e-8
) -> optax.GradientTransformationExtraArgs:
  """Adam direction ``m_hat / (sqrt(v_hat) + eps)`` with a step count per parameter array.

  ``update(grads, state, params=None, *, active)``: ``active`` is a pytree of boolean scalars
  (same structure as the parameters); inactive arrays get a zero update and unchanged state.
  The learning rate is applied by the caller (see :func:`apply_updates`).
  """

  def init(params):
    return AdamState(
      count=jax.tree.map(lambda p: jnp.zeros([], jnp.int32), params),
      mu=jax.tree.map(jnp.zeros_like, params),
      nu=jax.tree.map(jnp.zeros_like, params),
    )

  def update(grads, state, params=None, *, active):
    del params

    def leaf(g, count, mu, nu, on):
      new_count = count + on.astype(jnp.int32)
      new_mu = jnp.where(on, b1 * mu + (1.0 - b1) * g, mu)
      new_nu = jnp.where(on, b2 * nu + (1.0 - b2) * jnp.square(g), nu)
      t = jnp.maximum(new_count, 1).astype(jnp.float32)
      m_hat = new_mu / (1.0 - b1**t)
      v_hat = new_nu / (1.0 - b2**t)
      step = jnp.where(on, m_hat / (jnp.sqrt(v_hat) + eps), 0.0)
      return step, new_count, new_mu, new_nu

    out = jax.tree.map(leaf, grads, state.count, state.mu, state.nu, active)
    is_tuple = lambda x: isinstance(x, tuple)
    pick = lambda i: jax.tree.map(lambda t: t[i], out, is_leaf=is_tuple)
    return pick(0), AdamState(count=pick(1), mu=pick(2), nu=pick(3))

  return optax.GradientTransformationExtraArgs(init, update)


def _indexed_name(path) -> tuple:
  """(kind, index) of the first ``block_i`` / ``head_i`` / ``from_rgb_i`` in a key path."""
  for entry in path:
    m = _INDEXED.match(str(getattr(entry, "key", entry)))
    if m:
      return m.group(1), int(m.group(2))
  return None, None


def active_mask(params: PyTree, stage: int, alpha) -> PyTree:
  """Which parameter arrays take part in the forward pass at (stage, alpha).

  Blocks ``i <= stage`` are active; the head / from_rgb of ``stage`` is active, that of
  ``stage - 1`` only during the fade-in (alpha < 1); everything else (mapping networks, the
  critic's final layers) always is. ``stage`` is static, ``alpha`` may be traced.
  """
  fading = jnp.logical_and(stage > 0, jnp.asarray(alpha) < 1.0)

  def one(path, _):
    kind, index = _indexed_name(path)
    if kind is None:
      return jnp.asarray(True)
    if kind == "block":
      return jnp.asarray(index <= stage)
    if index == stage:
      return jnp.asarray(True)
    if index == stage - 1:
      return fading
    return jnp.asarray(False)

  return jax.tree_util.tree_map_with_path(one, params)


def lr_multipliers(params: PyTree, mapping_lr_mult: float) -> PyTree:
  """1.0 everywhere, ``mapping_lr_mult`` (0.01 in the reference) inside mapping networks."""

  def one(path, _):
    names = [str(getattr(e, "key", e)) for e in path]
    return mapping_lr_mult if any(n.endswith("mapping") for n in names) else 1.0

  return jax.tree_util.tree_map_with_path(one, params)


def apply_updates(params: PyTree, directions: PyTree, lr, multipliers: PyTree) -> PyTree:
  """``p - lr * mult * direction`` for every array (lr may be traced)."""
  return jax.tree.map(lambda p, d, m: p - (lr * m) * d, params, directions, multipliers)


def ema_update(ema: PyTree, params: PyTree, decay: float) -> PyTree:
  """``ema * decay + (1 - decay) * params``."""
  return jax.tree.map(lambda e, p: e * decay + (1.0 - decay) * p, ema, params)
