"""Wiring of the compiled training step, checked from outside against the pieces done by hand:
the critic's fake batch, the shifted mask the generator's mask losses see, the learning-rate
groups, and the EMA with its ramp-up (tiny config, fade-in stage, background jitter on)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from layered_gan_jax.nets import build, compositing
from layered_gan_jax.nets.generator import resolution_of
from layered_gan_jax.training import gan_steps, losses, train_gan

STAGE, ALPHA, LR, STEPS = 2, 0.5, 2e-3, 3


def _config():
  config = tiny.get_config()
  config.perturb.bg_contrast_jitter = 0.3
  config.train.ema_rampup = True
  return config


@pytest.fixture(scope="module")
def run():
  """STEPS compiled iterations at 16 px in the fade-in; every state and metric kept."""
  config = _config()
  generator, critic = build.build_generator(config), build.build_critic(config)
  state = train_gan.init_state(generator, critic, config)
  batch, res = config.train.batch_size, resolution_of(STAGE)
  step = jax.jit(gan_steps.make_train_step(generator, critic, config, STAGE))
  rng = np.random.default_rng(0)
  reals = [jnp.asarray(rng.uniform(-1, 1, (batch, res, res, 3)), jnp.float32) for _ in range(STEPS)]
  states, metrics = [jax.device_get(state)], []
  for real in reals:
    state, m = step(state, real, jnp.float32(ALPHA), jnp.float32(LR))
    states.append(jax.device_get(state))
    metrics.append(jax.device_get(m))
  return dict(
    config=config, generator=generator, critic=critic, states=states, metrics=metrics, reals=reals
  )


def _step_keys(run, state):
  """The critic pass's key, the generator pass's key and the shared mixing decision of the
  iteration at ``state.step``."""
  k_d, _, k_g, k_mix = jax.random.split(jax.random.fold_in(state.rng, state.step), 4)
  return k_d, k_g, jax.random.uniform(k_mix) < run["config"].train.style_mixing_prob


def _by_hand(run, state, key, mixing):
  """The generator pass of the step, written out: latents, noise drawn inside the generator
  from the key, shift + jitter from their key, composite."""
  config, generator = run["config"], run["generator"]
  p = config.perturb
  batch = config.train.batch_size

  @jax.jit
  def f(g_params, key):
    k_lat, k_noise, k_pert = jax.random.split(key, 3)
    z, z2, crossover = gan_steps.sample_latents(
      k_lat, batch, config.model.style_dim, STAGE, generator.mixing_groups, mixing
    )
    layers = generator.apply(
      {"params": g_params},
      z,
      stage=STAGE,
      alpha=ALPHA,
      z2=z2,
      crossover=crossover,
      rngs={"noise": k_noise},
    )
    perturbed, _ = compositing.perturb(
      k_pert, layers, shift_fraction=p.shift, bg_contrast_jitter=p.bg_contrast_jitter
    )
    fake = compositing.composite(
      perturbed["background"], perturbed["foreground"], perturbed["mask"]
    )
    return layers, perturbed, fake

  return f(state.g_params, key)


def test_critic_sees_the_perturbed_composite_of_the_step_keys(run):
  critic = run["critic"]
  for i in range(STEPS):
    state, m = run["states"][i], run["metrics"][i]
    k_d, _, mixing = _step_keys(run, state)
    _, _, fake = _by_hand(run, state, k_d, mixing)
    score = lambda x: critic.apply({"params": state.d_params}, x, stage=STAGE, alpha=ALPHA)
    np.testing.assert_allclose(m["d_fake"], np.mean(score(fake)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m["d_real"], np.mean(score(run["reals"][i])), rtol=1e-5, atol=1e-6)


def test_mask_losses_see_the_shifted_mask_zero_band_included(run):
  config = run["config"]
  eta = config.loss.min_mask_coverage
  for i in range(STEPS):
    state, m = run["states"][i], run["metrics"][i]
    _, k_g, mixing = _step_keys(run, state)
    layers, perturbed, _ = _by_hand(run, state, k_g, mixing)
    shifted = np.asarray(perturbed["mask"])
    np.testing.assert_allclose(
      m["mask_size_loss"], losses.mask_size_loss(shifted, eta), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
      m["mask_binary_loss"], losses.mask_binary_loss(shifted), rtol=1e-5, atol=1e-7
    )
    # The unshifted mask gives other values (the band and the moved pixels matter) ...
    assert abs(float(losses.mask_binary_loss(layers["mask"])) - float(m["mask_binary_loss"])) > 1e-6
    # ... and the coverage statistic is the unshifted one.
    np.testing.assert_allclose(m["mask_coverage"], np.mean(layers["mask"]), rtol=1e-5)
    # The band uncovered by the shift is exactly zero in the mask the losses saw.
    assert np.any(shifted == 0.0)


def test_both_passes_of_an_iteration_share_one_mixing_decision():
  config = _config()
  generator = build.build_generator(config)
  draw = jax.jit(jax.vmap(lambda k: gan_steps.draw_iteration(generator, config, STAGE, k, 2)))
  draws = draw(jax.random.split(jax.random.PRNGKey(0), 400))
  mixes = {
    p: np.stack([np.asarray(c) < STAGE for c in draws[p]["crossover"].values()])
    for p in ("critic", "generator")
  }
  for p in mixes:  # every mixing group of a pass mixes or none does
    assert np.all(mixes[p] == mixes[p][:1])
  np.testing.assert_array_equal(mixes["critic"][0], mixes["generator"][0])
  # Crossovers drawn in [0, STAGE) when mixing, so a mixing pass always has crossover < STAGE;
  # 0.9 of 400 iterations: 360 expected, 4 binomial sigma is 24.
  assert abs(mixes["critic"][0].sum() - 400 * config.train.style_mixing_prob) < 24


def test_shift_moves_only_foreground_and_mask():
  config = _config()
  generator = build.build_generator(config)
  params = train_gan.init_state(generator, build.build_critic(config), config).g_params
  draws = jax.jit(lambda k: gan_steps.draw_generator_inputs(generator, config, STAGE, k, 8, True))(
    jax.random.PRNGKey(3)
  )
  assert np.abs(np.asarray(draws["shifts"])).max() > 0
  outs = {}
  for shift in (0.0, 0.125):
    config.perturb.shift = shift
    outs[shift] = jax.device_get(
      gan_steps.generate_from_draws(generator, config, STAGE, params, draws, ALPHA)
    )
  (l0, p0, _), (l1, p1, _) = outs[0.0], outs[0.125]
  for k in l0:
    np.testing.assert_array_equal(l0[k], l1[k])  # the generator's layers do not depend on it
  np.testing.assert_array_equal(p0["background"], p1["background"])
  np.testing.assert_array_equal(p0["foreground"], l0["foreground"])  # shift 0: unmoved
  np.testing.assert_array_equal(p0["mask"], l0["mask"])
  assert not np.array_equal(p1["foreground"], l1["foreground"])
  assert not np.array_equal(p1["mask"], l1["mask"])


def test_learning_rate_groups_in_the_first_step(run):
  """Adam with b1 = 0 moves every active parameter by ~lr * mult in its first step: mapping
  networks by lr * 0.01, synthesis and critic by lr (lr * critic_lr_mult)."""
  config = run["config"]
  before, after = run["states"][0], run["states"][1]

  def deltas(a, b, keep):
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = jax.tree.leaves(b)
    out = [
      np.abs(np.asarray(y) - np.asarray(x)).ravel()
      for (p, x), y in zip(flat_a, flat_b)
      if keep("/".join(str(getattr(e, "key", e)) for e in p))
    ]
    return np.concatenate(out)

  mapping = deltas(before.g_params, after.g_params, lambda n: "mapping" in n)
  synthesis = deltas(before.g_params, after.g_params, lambda n: "synthesis" in n and "block_0" in n)
  crit = deltas(before.d_params, after.d_params, lambda n: "final" in n)
  mult = config.train.mapping_lr_mult
  # (float32 parameters of order 1 round a step of 2e-5 to within ~1 %.)
  assert np.median(mapping) == pytest.approx(LR * mult, rel=2e-2)
  assert mapping.max() <= LR * mult * 1.05
  assert np.median(synthesis) == pytest.approx(LR, rel=2e-2)
  assert np.median(crit) == pytest.approx(LR * config.train.critic_lr_mult, rel=2e-2)


def test_ema_and_its_rampup_against_numpy(run):
  config = run["config"]
  states = run["states"]
  ema = jax.tree.map(np.asarray, states[0].ema_params)
  for t in range(STEPS):
    decay = min(config.train.ema_decay, (1.0 + t) / (10.0 + t))
    ema = jax.tree.map(
      lambda e, p: e * np.float32(decay) + np.float32(1 - decay) * p,
      ema,
      jax.tree.map(np.asarray, states[t + 1].g_params),
    )
    for got, want in zip(jax.tree.leaves(states[t + 1].ema_params), jax.tree.leaves(ema)):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # Without the ramp-up the decay is the reference 0.999 from the first step.
  config.train.ema_rampup = False
  assert gan_steps.ema_decay(config.train, jnp.asarray(0)) == 0.999
  config.train.ema_rampup = True
  assert float(gan_steps.ema_decay(config.train, jnp.asarray(0))) == pytest.approx(0.1)


def test_remat_penalty_recomputes_and_changes_no_number(run):
  """``train.remat_penalty`` puts the penalty's input gradient under ``jax.checkpoint`` (it is
  in the traced program) and gives the same iterations, bit for bit, as the run without it."""
  config = _config()
  config.train.remat_penalty = True
  generator, critic = run["generator"], run["critic"]
  step_fn = gan_steps.make_train_step(generator, critic, config, STAGE)
  state = train_gan.init_state(generator, critic, config)
  args = (jnp.float32(ALPHA), jnp.float32(LR))
  programs = [
    str(jax.make_jaxpr(f)(state, run["reals"][0], *args))
    for f in (gan_steps.make_train_step(generator, critic, run["config"], STAGE), step_fn)
  ]
  assert "remat" not in programs[0] and "remat" in programs[1]
  step = jax.jit(step_fn)
  for i, real in enumerate(run["reals"]):
    state, m = step(state, real, *args)
    want = jax.tree.leaves(run["states"][i + 1])
    got = jax.tree.leaves(jax.device_get(state))
    assert all(np.array_equal(a, b) for a, b in zip(got, want)), f"iteration {i}"
    assert all(np.array_equal(m[k], run["metrics"][i][k]) for k in m), f"iteration {i}"
