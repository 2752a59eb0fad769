"""Random parameters for the exact-value tests of the models."""

import jax
import jax.numpy as jnp
import numpy as np


def random_params(init_fn, seed):
  """N(0, 1) values for every parameter that ``init_fn(key)`` makes (noise weights and biases
  included, so that every term of the computation matters); the shapes come from eval_shape."""
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
    lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(np.float32)), shapes
  )
