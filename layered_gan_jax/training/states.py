"""Training states: flax.struct dataclasses of pytrees (no images, no Python objects).

The stage, fade-in alpha and data position are not stored: they follow from ``step`` and the
config (see ``schedule.Schedule``).
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp

from layered_gan_jax import parallel
from layered_gan_jax.nets.critic import init_critic
from layered_gan_jax.nets.generator import init_generator
from layered_gan_jax.training import optim

PyTree = Any


@flax.struct.dataclass
class GANState:
  step: jax.Array  # Iterations done (one critic + one generator step each).
  g_params: PyTree
  d_params: PyTree
  g_opt: optim.AdamState
  d_opt: optim.AdamState
  ema_params: PyTree  # EMA of g_params: the generator used for samples, encoders, inference.
  rng: jax.Array  # Base key; the key of iteration t is fold_in(rng, t).


def create_gan_state(g_params, d_params, rng, adam) -> GANState:
  return GANState(
    step=jnp.zeros([], jnp.int32),
    g_params=g_params,
    d_params=d_params,
    g_opt=adam.init(g_params),
    d_opt=adam.init(d_params),
    ema_params=jax.tree.map(jnp.array, g_params),
    rng=rng,
  )


def gan_init_fn(generator, critic, config):
  """``init(key) -> GANState``: parameters of every stage, both Adam states, the EMA copy."""

  def init(key):
    kg, kd, kr = jax.random.split(key, 3)
    return create_gan_state(
      init_generator(generator, kg), init_critic(critic, kd), kr, optim.make_adam(config.train)
    )

  return init


@flax.struct.dataclass
class NetState:
  """One network trained with an optax optimizer: the encoder, the distilled segmenter."""

  step: jax.Array
  params: PyTree
  opt_state: PyTree
  rng: jax.Array


def net_init_fn(init_params, tx):
  """``init(key) -> NetState``: the parameters ``init_params(key)`` makes, ``tx``'s state of
  them, step 0."""

  def init(key):
    k_params, k_rng = jax.random.split(key)
    params = init_params(k_params)
    return NetState(
      step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params), rng=k_rng
    )

  return init


def init_replicated(init_fn, seed: int):
  """``init_fn(PRNGKey(seed))``, computed once and replicated on every device."""
  return jax.jit(init_fn, out_shardings=parallel.replicated())(jax.random.PRNGKey(seed))
