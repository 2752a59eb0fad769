"""WGAN-GP critic loss, gradient penalty and the mask losses against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from layered_gan_jax.nets import critic as critic_lib
from layered_gan_jax.training import losses

tree_map = jax.tree_util.tree_map


def _tree_dot(a, b):
  return sum(
    jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
  )


def _tree_axpy(a, v, h):
  return tree_map(lambda x, y: x + h * y, a, v)


def _e(key, real):
  return losses.interpolation_coefficients(key, real.shape[0])


# ----------------------------------------------------------------------------- gradient penalty


@pytest.mark.parametrize("norm", [0.3, 1.0, 2.5])
def test_gradient_penalty_of_linear_critic_is_exact(norm):
  rng = np.random.default_rng(0)
  w = rng.standard_normal((4, 4, 3))
  w = jnp.asarray(w / np.linalg.norm(w) * norm, jnp.float32)
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + 0.7  # D(x) = <w, x> + b
  real = jnp.asarray(rng.standard_normal((5, 4, 4, 3)), jnp.float32)
  fake = jnp.asarray(rng.standard_normal((5, 4, 4, 3)), jnp.float32)
  gp = losses.gradient_penalty(
    critic, real, fake, losses.interpolation_coefficients(jax.random.PRNGKey(1), 5)
  )
  assert float(gp) == pytest.approx((norm - 1.0) ** 2, rel=1e-5, abs=1e-9)


def test_gradient_penalty_interpolates_per_sample():
  """D(x) = 0.5 ||x||^2 has grad_x D = x, so the penalty is mean_b (||x_hat_b|| - 1)^2 with
  x_hat = e * real + (1 - e) * fake and one e ~ U[0, 1] per sample (recomputed from the key)."""
  rng = np.random.default_rng(1)
  real = jnp.asarray(rng.standard_normal((6, 3, 3, 2)) * 0.3, jnp.float32)
  fake = jnp.asarray(rng.standard_normal((6, 3, 3, 2)) * 0.3, jnp.float32)
  key = jax.random.PRNGKey(2)
  gp = losses.gradient_penalty(
    lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3)), real, fake, _e(key, real)
  )
  e = np.asarray(jax.random.uniform(key, (6, 1, 1, 1)), np.float64)
  assert np.ptp(e) > 0.1  # per sample, not one scalar
  x_hat = e * np.asarray(real, np.float64) + (1 - e) * np.asarray(fake, np.float64)
  ref = np.mean((np.linalg.norm(x_hat.reshape(6, -1), axis=1) - 1.0) ** 2)
  assert float(gp) == pytest.approx(ref, rel=1e-5)


def test_gradient_penalty_param_gradient_matches_finite_differences():
  """Second-order: d GP / d params (a small smooth MLP critic) against central differences,
  in float64 (h = 1e-6, relative tolerance 1e-6)."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    params = {
      "w1": jnp.asarray(rng.standard_normal((12, 8)) * 0.5),
      "b1": jnp.asarray(rng.standard_normal(8) * 0.1),
      "w2": jnp.asarray(rng.standard_normal(8)),
      "b2": jnp.asarray(0.3),
    }

    def critic(p, x):
      h = jnp.tanh(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"])
      return h @ p["w2"] + p["b2"]

    real = jnp.asarray(rng.standard_normal((4, 2, 2, 3)))
    fake = jnp.asarray(rng.standard_normal((4, 2, 2, 3)))
    key = jax.random.PRNGKey(4)
    e = _e(key, real)
    gp = jax.jit(lambda p: losses.gradient_penalty(lambda x: critic(p, x), real, fake, e))
    grads = jax.jit(jax.grad(gp))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(grads["w1"]).max()) > 0
    h = 1e-6
    # Random directions and single coordinates.
    for seed in range(3):
      v = tree_map(
        lambda a: jnp.asarray(np.random.default_rng(10 + seed).standard_normal(a.shape)), params
      )
      fd = (gp(_tree_axpy(params, v, h)) - gp(_tree_axpy(params, v, -h))) / (2 * h)
      assert float(_tree_dot(grads, v)) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    for name, idx in [("w1", (3, 5)), ("b1", (2,)), ("w2", (7,))]:
      e = tree_map(jnp.zeros_like, params)
      e[name] = e[name].at[idx].set(1.0)
      fd = (gp(_tree_axpy(params, e, h)) - gp(_tree_axpy(params, e, -h))) / (2 * h)
      assert float(grads[name][idx]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    # b2 shifts D by a constant: the penalty does not depend on it.
    assert float(grads["b2"]) == 0.0


# ----------------------------------------------------------------------------- critic loss


def test_critic_loss_equals_its_parts():
  rng = np.random.default_rng(5)
  w = jnp.asarray(rng.standard_normal((3, 3, 2)), jnp.float32)
  critic = lambda x: jnp.sum(jnp.sin(x) * w, axis=(1, 2, 3))
  real = jnp.asarray(rng.standard_normal((4, 3, 3, 2)), jnp.float32)
  fake = jnp.asarray(rng.standard_normal((4, 3, 3, 2)), jnp.float32)
  key = jax.random.PRNGKey(6)
  d_real, d_fake = np.asarray(critic(real)), np.asarray(critic(fake))
  gp = float(losses.gradient_penalty(critic, real, fake, _e(key, real)))
  for gp_weight, drift_weight in [(10.0, 0.001), (3.0, 0.5)]:
    loss, aux = losses.critic_loss(
      critic, real, fake, _e(key, real), gp_weight=gp_weight, drift_weight=drift_weight
    )
    expected = d_fake.mean() - d_real.mean() + drift_weight * np.mean(d_real**2) + gp_weight * gp
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(aux["critic_loss"]) == float(loss)
    assert float(aux["wasserstein"]) == pytest.approx(d_real.mean() - d_fake.mean(), rel=1e-5)
    assert float(aux["gradient_penalty"]) == pytest.approx(gp, rel=1e-6)
    assert float(aux["drift"]) == pytest.approx(np.mean(d_real**2), rel=1e-5)
    assert float(aux["d_real"]) == pytest.approx(d_real.mean(), rel=1e-5)
    assert float(aux["d_fake"]) == pytest.approx(d_fake.mean(), rel=1e-5)
  # Default weights are the reference ones: GP 10, drift 0.001.
  loss, _ = losses.critic_loss(critic, real, fake, _e(key, real))
  expected = d_fake.mean() - d_real.mean() + 0.001 * np.mean(d_real**2) + 10.0 * gp
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_critic_loss_of_real_critic_is_twice_differentiable():
  """jax.grad of the WGAN-GP loss of the real Critic (fused stride-2 conv at 8 px, blur,
  minibatch stddev, fade-in skip with avg pooling) wrt its parameters is finite and matches a
  central difference in a random direction. float64; h = 1e-6; relative tolerance 1e-5."""
  with jax.enable_x64(True):
    model = critic_lib.Critic(channels=(4, 4), fused_resolution=8, dtype=jnp.float64)
    rng = np.random.default_rng(7)
    shapes = jax.eval_shape(lambda k: critic_lib.init_critic(model, k), jax.random.PRNGKey(0))
    params = tree_map(lambda s: jnp.asarray(rng.standard_normal(s.shape) * 0.5), shapes)
    assert params["block_1"]["conv2"]["kernel"].shape == (3, 3, 4, 4)
    real = jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 3)))
    fake = jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 3)))
    key = jax.random.PRNGKey(8)
    v = tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), params)
    h = 1e-6

    def loss(p):
      fn = lambda x: model.apply({"params": p}, x, stage=1, alpha=0.7)
      return losses.critic_loss(fn, real, fake, _e(key, real))[0]

    grads = jax.jit(jax.grad(loss))(params)
    loss_jit = jax.jit(loss)  # compiled once, evaluated at p + h v and p - h v
    fd = (loss_jit(_tree_axpy(params, v, h)) - loss_jit(_tree_axpy(params, v, -h))) / (2 * h)
    directional = _tree_dot(grads, v)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(g.dtype == jnp.float64 and np.all(np.isfinite(g)) for g in leaves)
    # Every layer receives a gradient (the GP term reaches all of them).
    for name in ("from_rgb_0", "from_rgb_1", "block_1", "final_conv1", "final_conv2", "output"):
      assert float(sum(jnp.abs(g).sum() for g in jax.tree_util.tree_leaves(grads[name]))) > 0, name
    assert float(directional) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


# ----------------------------------------------------------------------------- mask losses


def test_mask_size_loss_hand_computed():
  mask = np.zeros((3, 4, 4, 1), np.float32)
  mask[0] = 0.1  # coverage 0.10 -> 0.25 - 0.10 = 0.15
  mask[1, :2] = 1.0  # coverage 0.50 -> 0
  mask[2, 0, :2] = 1.0  # coverage 2/16 = 0.125 -> 0.125
  loss = losses.mask_size_loss(jnp.asarray(mask), 0.25)
  assert float(loss) == pytest.approx((0.15 + 0.0 + 0.125) / 3, rel=1e-6)
  assert float(losses.mask_size_loss(jnp.ones((2, 4, 4, 1)), 0.25)) == 0.0
  assert float(losses.mask_size_loss(jnp.zeros((2, 4, 4, 1)), 0.2)) == pytest.approx(0.2)


def test_mask_binary_loss_hand_computed():
  mask = jnp.asarray(np.array([0.0, 1.0, 0.5, 0.2, 0.9, 0.7], np.float32).reshape(1, 2, 3, 1))
  expected = (0.0 + 0.0 + 0.5 + 0.2 + 0.1 + 0.3) / 6
  assert float(losses.mask_binary_loss(mask)) == pytest.approx(expected, rel=1e-6)
  assert float(losses.mask_binary_loss(jnp.round(mask))) == 0.0


def test_generator_loss_hand_computed():
  d_fake = jnp.array([1.0, -3.0, 0.5, 2.5])
  mask = np.full((4, 2, 2, 1), 0.1, np.float32)
  mask[1] = 0.6
  mask[2, 0, 0] = 1.0
  # coverages 0.1, 0.6, (1.0 + 3 * 0.1) / 4 = 0.325 (above eta: no penalty), 0.1
  size = np.mean([0.25 - 0.1, 0.0, 0.0, 0.25 - 0.1])
  binary = np.mean(np.minimum(mask, 1 - mask))
  loss, aux = losses.generator_loss(
    d_fake, jnp.asarray(mask), eta=0.25, size_weight=2.0, binary_weight=3.0
  )
  expected = -0.25 + 2.0 * size + 3.0 * binary
  assert float(loss) == pytest.approx(expected, rel=1e-6)
  assert float(aux["generator_loss"]) == float(loss)
  assert float(aux["g_adversarial"]) == pytest.approx(-0.25)
  assert float(aux["mask_size_loss"]) == pytest.approx(size, rel=1e-6)
  assert float(aux["mask_binary_loss"]) == pytest.approx(binary, rel=1e-6)


def test_max_mask_coverage_against_numpy():
  rng = np.random.default_rng(3)
  mask = rng.uniform(size=(6, 5, 5, 1)).astype(np.float32)
  mask[0] = 0.95  # coverage 0.95
  mask[1] = 0.05  # coverage 0.05: below eta
  cover = mask.reshape(6, -1).mean(axis=1)
  eta, eta_max = 0.2, 0.5
  low = np.maximum(0.0, eta - cover).mean()
  high = np.maximum(0.0, cover - eta_max).mean()
  assert high > 0.07 and low > 0.02  # both terms are active in this batch
  assert float(losses.mask_max_size_loss(jnp.asarray(mask), eta_max)) == pytest.approx(
    high, rel=1e-5
  )
  d_fake = jnp.zeros((6,))
  for e_max, expected in ((1.0, low), (eta_max, low + high)):
    _, aux = losses.generator_loss(
      d_fake, jnp.asarray(mask), eta=eta, size_weight=2.0, binary_weight=0.0, eta_max=e_max
    )
    assert float(aux["mask_size_loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(aux["generator_loss"]) == pytest.approx(2.0 * expected, rel=1e-5)


def test_mask_statistics_and_reconstruction_loss():
  mask = jnp.asarray(np.array([0.0, 0.05, 0.5, 0.95, 1.0, 0.3], np.float32))
  stats = losses.mask_statistics(mask)
  assert float(stats["mask_coverage"]) == pytest.approx(np.mean([0, 0.05, 0.5, 0.95, 1, 0.3]))
  assert float(stats["mask_binary_fraction"]) == pytest.approx(4 / 6)
  rng = np.random.default_rng(9)
  a, b = rng.standard_normal((2, 2, 4, 4, 3)).astype(np.float32)
  fa, fb = rng.standard_normal((2, 2, 4, 4, 5)).astype(np.float32)
  loss, aux = losses.reconstruction_loss(a, b, fa, fb, feature_weight=0.5)
  l1, feat = np.mean(np.abs(a - b)), np.mean((fa - fb) ** 2)
  assert float(aux["l1"]) == pytest.approx(l1, rel=1e-5)
  assert float(aux["feature_loss"]) == pytest.approx(feat, rel=1e-5)
  assert float(loss) == pytest.approx(l1 + 0.5 * feat, rel=1e-5)
