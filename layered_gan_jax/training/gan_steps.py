"""The GAN's compiled iteration: one critic step, then one generator step against the updated
critic, in one compiled function per stage (the stage is static; alpha and the learning rate
are traced), and the draws it consumes (latents, style mixing, noise, perturbations).
"""

import time

import jax
import jax.numpy as jnp
from absl import logging

from layered_gan_jax import parallel
from layered_gan_jax.nets import compositing
from layered_gan_jax.nets.architecture import resolution_of
from layered_gan_jax.nets.generator import LayeredGenerator
from layered_gan_jax.training import losses, optim
from layered_gan_jax.training.states import GANState


def sample_latents(key, batch: int, style_dim: int, stage: int, mixing_groups, mixing):
  """Two latents and one crossover per mixing group. Without mixing (``mixing`` false, and
  always at stage 0) the crossover is ``stage``: every block then uses the first latent's
  style."""
  k_z, k_z2, k_cross = jax.random.split(key, 3)
  z = jax.random.normal(k_z, (batch, style_dim))
  z2 = jax.random.normal(k_z2, (batch, style_dim))
  sharding = parallel.batch_sharded()
  z, z2 = (jax.lax.with_sharding_constraint(v, sharding) for v in (z, z2))
  crossover = {}
  for i, group in enumerate(mixing_groups):
    drawn = jax.random.randint(jax.random.fold_in(k_cross, i), (), 0, max(stage, 1))
    crossover[group] = jnp.where(jnp.logical_and(mixing, stage > 0), drawn, stage)
  return z, z2, crossover


def draw_mixing(key, mixing_prob):
  """Whether an iteration mixes styles: one decision, shared by its two generator passes."""
  return jax.random.uniform(key) < mixing_prob


def draw_generator_inputs(generator, config, stage: int, key, batch: int, mixing):
  """The random inputs of one pass of the training generator: latents ``z``, ``z2`` and the
  style-mixing ``crossover`` (mixing or not as ``mixing`` says), the ``noise`` maps, and the
  perturbation's ``shifts`` and contrast ``factors``. ``generate_from_draws`` turns them into
  layers deterministically."""
  p = config.perturb
  k_lat, k_noise, k_pert = jax.random.split(key, 3)
  z, z2, crossover = sample_latents(
    k_lat, batch, config.model.style_dim, stage, generator.mixing_groups, mixing
  )
  noise = generator.apply(
    {}, batch, stage, method=LayeredGenerator.draw_noise, rngs={"noise": k_noise}
  )
  perturbation = compositing.sample_perturbation(
    k_pert,
    batch,
    resolution_of(stage),
    shift_fraction=p.shift,
    bg_contrast_jitter=p.bg_contrast_jitter,
  )
  return {"z": z, "z2": z2, "crossover": crossover, "noise": noise, **perturbation}


def generate_from_draws(generator, config, stage: int, g_params, draws, alpha):
  """``(layers, perturbed layers, perturbed composite)`` of the training generator for the
  random inputs ``draws`` (see ``draw_generator_inputs``)."""
  p = config.perturb
  layers = generator.apply(
    {"params": g_params},
    draws["z"],
    stage=stage,
    alpha=alpha,
    z2=draws["z2"],
    crossover=draws["crossover"],
    noise=draws["noise"],
  )
  perturbed = compositing.apply_perturbation(
    layers, draws, shift_fraction=p.shift, bg_contrast_jitter=p.bg_contrast_jitter
  )
  fake = compositing.composite(perturbed["background"], perturbed["foreground"], perturbed["mask"])
  return layers, perturbed, fake


def draw_iteration(generator, config, stage: int, key, batch: int):
  """All random inputs of one iteration: the critic step's generator pass, the gradient
  penalty's interpolation coefficients, the generator step's generator pass. The two passes
  share one style-mixing decision, as the reference loop's do."""
  k_d, k_gp, k_g, k_mix = jax.random.split(key, 4)
  mixing = draw_mixing(k_mix, config.train.style_mixing_prob)
  return {
    "critic": draw_generator_inputs(generator, config, stage, k_d, batch, mixing),
    "gp": losses.interpolation_coefficients(k_gp, batch),
    "generator": draw_generator_inputs(generator, config, stage, k_g, batch, mixing),
  }


def make_update_fn(generator, critic, config, stage: int):
  """Returns ``update(state, real, draws, alpha, lr) -> (state, metrics)``: one iteration for
  given random inputs (``draw_iteration``), deterministic (not jitted)."""
  t, l = config.train, config.loss
  adam = optim.make_adam(t)

  def critic_fn(d_params, alpha):
    return lambda x: critic.apply({"params": d_params}, x, stage=stage, alpha=alpha)

  def update(state: GANState, real, draws, alpha, lr):
    # Critic step on the perturbed composites of the current generator.
    _, _, fake = generate_from_draws(
      generator, config, stage, state.g_params, draws["critic"], alpha
    )
    fake = jax.lax.stop_gradient(fake)

    def d_loss_fn(d_params):
      return losses.critic_loss(
        critic_fn(d_params, alpha),
        real,
        fake,
        draws["gp"],
        gp_weight=l.gp_weight,
        drift_weight=l.drift_weight,
        remat_penalty=t.remat_penalty,
      )

    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(state.d_params)
    d_dir, d_opt = adam.update(
      d_grads, state.d_opt, active=optim.active_mask(state.d_params, stage, alpha)
    )
    d_mult = jax.tree.map(lambda _: t.critic_lr_mult, state.d_params)
    d_params = optim.apply_updates(state.d_params, d_dir, lr, d_mult)

    # Generator step against the updated critic.
    def g_loss_fn(g_params):
      layers, perturbed, fake = generate_from_draws(
        generator, config, stage, g_params, draws["generator"], alpha
      )
      d_fake = critic_fn(d_params, alpha)(fake)
      loss, metrics = losses.generator_loss(
        d_fake,
        perturbed["mask"],
        eta=l.min_mask_coverage,
        size_weight=l.mask_size_weight,
        binary_weight=l.binarization_weight,
        eta_max=l.max_mask_coverage,
      )
      metrics.update(losses.mask_statistics(layers["mask"]))
      return loss, metrics

    g_grads, g_metrics = jax.grad(g_loss_fn, has_aux=True)(state.g_params)
    g_dir, g_opt = adam.update(
      g_grads, state.g_opt, active=optim.active_mask(state.g_params, stage, alpha)
    )
    g_params = optim.apply_updates(
      state.g_params, g_dir, lr, optim.lr_multipliers(state.g_params, t.mapping_lr_mult)
    )
    ema = optim.ema_update(state.ema_params, g_params, ema_decay(t, state.step))
    new_state = state.replace(
      step=state.step + 1,
      g_params=g_params,
      d_params=d_params,
      g_opt=g_opt,
      d_opt=d_opt,
      ema_params=ema,
    )
    return new_state, {**d_metrics, **g_metrics, "alpha": jnp.asarray(alpha, jnp.float32)}

  return update


def ema_decay(train_config, step):
  """The EMA decay after iteration ``step``: ``ema_decay``, or with ``ema_rampup``
  ``min(ema_decay, (1 + t) / (10 + t))`` so that short runs forget the random init sooner."""
  if not train_config.ema_rampup:
    return train_config.ema_decay
  step_f = jnp.asarray(step).astype(jnp.float32)
  return jnp.minimum(train_config.ema_decay, (1.0 + step_f) / (10.0 + step_f))


def make_train_step(generator, critic, config, stage: int):
  """Returns ``step(state, real, alpha, lr) -> (state, metrics)`` for one stage (not jitted):
  the iteration's random inputs come from ``fold_in(state.rng, state.step)``."""
  update = make_update_fn(generator, critic, config, stage)

  def step(state: GANState, real, alpha, lr):
    key = jax.random.fold_in(state.rng, state.step)
    draws = draw_iteration(generator, config, stage, key, real.shape[0])
    return update(state, real, draws, alpha, lr)

  return step


def make_multi_step(generator, critic, config, stage: int, count: int):
  """Returns ``steps(state, reals, alphas, lr) -> (state, metrics)``: ``count`` iterations of
  ``make_train_step`` in one ``lax.scan`` (``reals``: a tuple of ``count`` batches, ``alphas``:
  ``[count]``; each metric stacked ``[count]``), the same arithmetic as ``count`` calls."""
  step = make_train_step(generator, critic, config, stage)

  def steps(state: GANState, reals, alphas, lr):
    def body(carry, inputs):
      real, alpha = inputs
      return step(carry, real, alpha, lr)

    return jax.lax.scan(body, state, (jnp.stack(reals), alphas), length=count, unroll=True)

  return steps


def lower_train_step(generator, critic, config, stage: int, state, real_shape, count: int = 1):
  """The jitted step of a stage (``count`` > 1: ``make_multi_step``'s), lowered for ``state``
  (arrays or shapes) and real batches of ``real_shape``: what ``compile_train_step`` compiles,
  and what ``flops_of`` counts."""
  repl, data = parallel.replicated(), parallel.batch_sharded()
  real = jax.ShapeDtypeStruct(real_shape, jnp.float32, sharding=data)
  scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)
  if count == 1:
    fn, reals, alphas, real_shardings = (
      make_train_step(generator, critic, config, stage),
      real,
      scalar,
      data,
    )
  else:
    fn = make_multi_step(generator, critic, config, stage, count)
    reals, real_shardings = (real,) * count, (data,) * count
    alphas = jax.ShapeDtypeStruct((count,), jnp.float32, sharding=repl)
  jitted = jax.jit(
    fn,
    in_shardings=(repl, real_shardings, repl, repl),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  return jitted.lower(state, reals, alphas, scalar)


def compile_train_step(generator, critic, config, stage: int, state, real_shape, count: int = 1):
  """jit + ahead-of-time compile of the step of a stage (``count`` iterations per call); logs
  the compile time and FLOPs."""
  start = time.time()
  lowered = lower_train_step(generator, critic, config, stage, state, real_shape, count)
  compiled = lowered.compile()
  seconds = time.time() - start
  flops = flops_of(lowered) / jax.device_count() / count
  logging.info(
    "Compiled the train step of stage %d (%d px, batch %d%s) in %.1f s; %.3g FLOP "
    "per iteration (XLA count)",
    stage,
    real_shape[1],
    real_shape[0],
    f", {count} iterations per call" if count > 1 else "",
    seconds,
    flops,
  )
  return compiled, seconds, flops


def flops_of(stage) -> float:
  """XLA's FLOP count of a ``jax.stages.Lowered`` or ``Compiled`` program (0 if unknown).

  Count the LOWERED program (before XLA's optimizations) for a platform-independent figure: on
  GPU the compiled program runs convolutions as cuDNN custom calls, which the compiled
  program's cost analysis does not count (it reported ~0.15 % of the FLOPs on an H200). On CPU
  the two counts agree within 0.05 % at the reference widths. The lowered program is the global
  one: divide by the device count for a per-device figure (the replicated optimizer update it
  then undercounts is < 0.1 % of an iteration).
  """
  cost = stage.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))
