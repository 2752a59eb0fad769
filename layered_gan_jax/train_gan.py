"""Training of the layered GAN: step factories and ``train_and_evaluate(config, workdir)``.

One iteration = one critic step, then one generator step against the updated critic, in one
compiled function per stage (the stage is static; alpha and the learning rate are traced).
"""

import json
import time
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import parameter_overview
from etils import epath

from layered_gan_jax import (checkpointing, collapse, compositing, config_validation, errors,
                             files, losses, models, optim, parallel, restore, visualization)
from layered_gan_jax import state as state_lib
from layered_gan_jax.data import train as train_data
from layered_gan_jax.architecture import resolution_of
from layered_gan_jax.generator import LayeredGenerator
from layered_gan_jax.errors import NonFiniteLossError
from layered_gan_jax.loop import TrainLoop, metric_writer, writer_lease
from layered_gan_jax.schedule import Schedule
from layered_gan_jax.state import GANState


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
  z, z2, crossover = sample_latents(k_lat, batch, config.model.style_dim, stage,
                                    generator.mixing_groups, mixing)
  noise = generator.apply({}, batch, stage, method=LayeredGenerator.draw_noise,
                          rngs={"noise": k_noise})
  perturbation = compositing.sample_perturbation(
      k_pert, batch, resolution_of(stage), shift_fraction=p.shift,
      bg_contrast_jitter=p.bg_contrast_jitter)
  return {"z": z, "z2": z2, "crossover": crossover, "noise": noise, **perturbation}


def generate_from_draws(generator, config, stage: int, g_params, draws, alpha):
  """``(layers, perturbed layers, perturbed composite)`` of the training generator for the
  random inputs ``draws`` (see ``draw_generator_inputs``)."""
  p = config.perturb
  layers = generator.apply({"params": g_params}, draws["z"], stage=stage, alpha=alpha,
                           z2=draws["z2"], crossover=draws["crossover"], noise=draws["noise"])
  perturbed = compositing.apply_perturbation(layers, draws, shift_fraction=p.shift,
                                             bg_contrast_jitter=p.bg_contrast_jitter)
  fake = compositing.composite(perturbed["background"], perturbed["foreground"],
                               perturbed["mask"])
  return layers, perturbed, fake


def draw_iteration(generator, config, stage: int, key, batch: int):
  """All random inputs of one iteration: the critic step's generator pass, the gradient
  penalty's interpolation coefficients, the generator step's generator pass. The two passes
  share one style-mixing decision, as the reference loop's do."""
  k_d, k_gp, k_g, k_mix = jax.random.split(key, 4)
  mixing = draw_mixing(k_mix, config.train.style_mixing_prob)
  return {"critic": draw_generator_inputs(generator, config, stage, k_d, batch, mixing),
          "gp": losses.interpolation_coefficients(k_gp, batch),
          "generator": draw_generator_inputs(generator, config, stage, k_g, batch, mixing)}


def make_update_fn(generator, critic, config, stage: int):
  """Returns ``update(state, real, draws, alpha, lr) -> (state, metrics)``: one iteration for
  given random inputs (``draw_iteration``), deterministic (not jitted)."""
  t, l = config.train, config.loss
  adam = optim.make_adam(t)

  def critic_fn(d_params, alpha):
    return lambda x: critic.apply({"params": d_params}, x, stage=stage, alpha=alpha)

  def update(state: GANState, real, draws, alpha, lr):
    # Critic step on the perturbed composites of the current generator.
    _, _, fake = generate_from_draws(generator, config, stage, state.g_params,
                                     draws["critic"], alpha)
    fake = jax.lax.stop_gradient(fake)

    def d_loss_fn(d_params):
      return losses.critic_loss(critic_fn(d_params, alpha), real, fake, draws["gp"],
                                gp_weight=l.gp_weight, drift_weight=l.drift_weight,
                                remat_penalty=t.remat_penalty)

    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(state.d_params)
    d_dir, d_opt = adam.update(d_grads, state.d_opt,
                               active=optim.active_mask(state.d_params, stage, alpha))
    d_mult = jax.tree.map(lambda _: t.critic_lr_mult, state.d_params)
    d_params = optim.apply_updates(state.d_params, d_dir, lr, d_mult)

    # Generator step against the updated critic.
    def g_loss_fn(g_params):
      layers, perturbed, fake = generate_from_draws(generator, config, stage, g_params,
                                                    draws["generator"], alpha)
      d_fake = critic_fn(d_params, alpha)(fake)
      loss, metrics = losses.generator_loss(
          d_fake, perturbed["mask"], eta=l.min_mask_coverage, size_weight=l.mask_size_weight,
          binary_weight=l.binarization_weight, eta_max=l.max_mask_coverage)
      metrics.update(losses.mask_statistics(layers["mask"]))
      return loss, metrics

    g_grads, g_metrics = jax.grad(g_loss_fn, has_aux=True)(state.g_params)
    g_dir, g_opt = adam.update(g_grads, state.g_opt,
                               active=optim.active_mask(state.g_params, stage, alpha))
    g_params = optim.apply_updates(state.g_params, g_dir, lr,
                                   optim.lr_multipliers(state.g_params, t.mapping_lr_mult))
    ema = optim.ema_update(state.ema_params, g_params, ema_decay(t, state.step))
    new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                              g_opt=g_opt, d_opt=d_opt, ema_params=ema)
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
    fn, reals, alphas, real_shardings = (make_train_step(generator, critic, config, stage),
                                         real, scalar, data)
  else:
    fn = make_multi_step(generator, critic, config, stage, count)
    reals, real_shardings = (real,) * count, (data,) * count
    alphas = jax.ShapeDtypeStruct((count,), jnp.float32, sharding=repl)
  jitted = jax.jit(fn, in_shardings=(repl, real_shardings, repl, repl),
                   out_shardings=(repl, repl), donate_argnums=(0,))
  return jitted.lower(state, reals, alphas, scalar)


def compile_train_step(generator, critic, config, stage: int, state, real_shape,
                       count: int = 1):
  """jit + ahead-of-time compile of the step of a stage (``count`` iterations per call); logs
  the compile time and FLOPs."""
  start = time.time()
  lowered = lower_train_step(generator, critic, config, stage, state, real_shape, count)
  compiled = lowered.compile()
  seconds = time.time() - start
  flops = flops_of(lowered) / jax.device_count() / count
  logging.info("Compiled the train step of stage %d (%d px, batch %d%s) in %.1f s; %.3g FLOP "
               "per iteration (XLA count)", stage, real_shape[1], real_shape[0],
               f", {count} iterations per call" if count > 1 else "", seconds, flops)
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


def init_state(generator, critic, config) -> GANState:
  """Parameters of every stage, both optimizer states and the EMA copy, replicated."""
  return state_lib.init_replicated(state_lib.gan_init_fn(generator, critic, config),
                                   config.seed)


def make_sample_fn(generator, config, stage: int):
  """``sample(ema_params, alpha) -> (layers, shifted composite)``: the EMA generator on fixed
  latents and noise (derived from the seed inside the compiled function, so every process of a
  multi-host run computes the same grid)."""
  num, seed = config.train.num_samples, config.seed + 12345

  def sample(ema_params, alpha):
    k_z, k_noise, k_pert = jax.random.split(jax.random.PRNGKey(seed), 3)
    z = jax.random.normal(k_z, (num, config.model.style_dim))
    layers = generator.apply({"params": ema_params}, z, stage=stage, alpha=alpha,
                             rngs={"noise": k_noise})
    perturbed, _ = compositing.perturb(k_pert, layers, shift_fraction=config.perturb.shift,
                                       bg_contrast_jitter=0.0)
    shifted = compositing.composite(perturbed["background"], perturbed["foreground"],
                                    perturbed["mask"])
    return layers, shifted

  return jax.jit(sample, out_shardings=parallel.replicated())


def write_samples(sample_fn, state, step, alpha, writer, workdir):
  """Writes the sample grid of the fixed latents; returns their layers (host arrays)."""
  layers, shifted = jax.device_get(sample_fn(state.ema_params, alpha))
  image = visualization.grid(visualization.layer_rows(layers, shifted))
  if jax.process_index() == 0:
    visualization.save_png(files.join(workdir, "samples", f"step_{step:07d}.png"), image)
    visualization.save_png(files.join(workdir, "samples", "latest.png"), image)
  writer.write_images(step, {"samples/composite_bg_fg_mask_maskedfg_shifted": image[None]})
  return layers


def all_finite(tree) -> bool:
  """Whether every floating-point element of ``tree`` is finite (one compiled reduction, not
  one per leaf shape)."""
  floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return bool(jax.device_get(_all_finite(floats)))


@jax.jit
def _all_finite(leaves):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def restore_or_init(generator, critic, config, ckpt: checkpointing.Checkpointer
                    ) -> Tuple[GANState, Optional[int]]:
  """The GAN state of the latest intact checkpoint, or a fresh one; and the step restored."""
  items, step = restore.restore_or_init(
      ckpt, restore.gan_items(init_state(generator, critic, config)), "GAN", config,
      config_validation.check_saved_model)
  return restore.gan_state_of(items), step


def save_checkpoint(ckpt, state, config, schedule, step, last_good: Optional[int],
                    collapse_state: Optional[Dict] = None) -> int:
  if not all_finite((state.g_params, state.d_params, state.ema_params)):
    raise NonFiniteLossError(
        f"non-finite parameters at step {step}; no checkpoint written. "
        + errors.last_good(last_good, ckpt.directory))
  stage, alpha = schedule.at(max(step - 1, 0))
  meta = {"step": step, "stage": stage.stage, "resolution": stage.resolution,
          "alpha": alpha, "images_seen": schedule.images_seen(step)}
  if collapse_state is not None:
    meta["collapse"] = collapse_state
  ckpt.save(step, dict(restore.gan_items(state), config=checkpointing.config_to_dict(config),
                       meta=meta))
  logging.info("Saved checkpoint of step %d", step)
  return step


def train_and_evaluate(config, workdir: str) -> GANState:
  """Trains the layered GAN described by ``config`` (validated by the caller: main.py's
  preflight, or ``config_validation.validate_config``); resumes from ``workdir`` if it holds a
  checkpoint. Returns the final state."""
  workdir = str(files.resolve(workdir))  # Local: absolute; gs://...: as given.
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  t = config.train
  lease = writer_lease(config, files.join(workdir, restore.GAN_DIR), "train")
  ckpt = restore.gan_checkpointer(workdir, t.keep_checkpoints)
  schedule = Schedule(t, config.model.channels)
  writer = metric_writer(workdir)
  state = monitor = None

  def save(step):
    return save_checkpoint(ckpt, state, config, schedule, step, loop.last_saved, monitor.state())

  compiled = {"seconds": 0.0}  # The latest stage's compile time, for the ETA.
  loop = TrainLoop("GAN", ckpt, writer, schedule.max_steps, t.log_every_steps, save,
                   {"px": "resolution", "critic": "critic_loss", "W": "wasserstein",
                    "GP": "gradient_penalty", "G": "generator_loss",
                    "coverage": "mask_coverage"},
                   eta=lambda step, sps: schedule.eta(step, sps, compiled["seconds"]),
                   lease=lease)
  with loop:
    # 1. Restore or initialise, 2. per stage: compile, then iterate over its batches.
    generator, critic = models.build_generator(config), models.build_critic(config)
    state, restored = restore_or_init(generator, critic, config, ckpt)
    loop.last_saved = restored  # Not a damaged later step the restore skipped.
    monitor = collapse.CollapseMonitor(
        t.collapse_patience,
        None if restored is None else ckpt.read_json(restored, "meta").get("collapse"))
    step = int(jax.device_get(state.step))
    if step == 0:
      writer.write_hparams(_flatten(checkpointing.config_to_dict(config)))
      logging.info("Generator parameters:\n%s",
                   parameter_overview.get_parameter_overview(state.g_params))
      logging.info("Critic parameters:\n%s",
                   parameter_overview.get_parameter_overview(state.d_params))
    entered = False
    for stage in schedule.stages:
      end = min(stage.start_step + stage.num_steps, schedule.max_steps)  # Last: max_steps.
      if step >= end:
        continue
      if entered:
        loop.save_unless_saved(step)
      entered = True
      shape = (stage.batch_size, stage.resolution, stage.resolution, 3)
      start = time.time()
      train_step, compiled["seconds"], _ = compile_train_step(generator, critic, config,
                                                              stage.stage, state, shape)
      per_call = min(t.steps_per_call, end - step)
      if per_call > 1:
        group_step, seconds, _ = compile_train_step(generator, critic, config, stage.stage,
                                                    state, shape, per_call)
        compiled["seconds"] += seconds
      sample_fn = make_sample_fn(generator, config, stage.stage)
      iterator = train_data.train_iterator(
          config.data, resolution=stage.resolution,
          batch_size=parallel.per_process_batch(stage.batch_size),
          seed=config.seed + 1000 * stage.stage, start_index=step - stage.start_step)
      reals = parallel.prefetch_to_device((b["image"] for b in iterator), t.device_prefetch)
      loop.exclude(time.time() - start)  # Step time and images/s: iterations only.
      loop.renew()  # A compile may take minutes.
      lr = np.float32(stage.lr)  # Host scalars: a jnp scalar would be an eager op per step.

      def extras(step, stage=stage):
        return lambda: {"resolution": stage.resolution,
                        "images_seen": schedule.images_seen(step), "learning_rate": stage.lr}

      def acts_after(step):  # Groups of iterations end where something happens.
        return (loop.itstime(step, t.sample_every_steps) or
                loop.itstime(step, t.checkpoint_every_steps) or
                fid_due(t.fid_every_images, schedule.images_seen(step - 1),
                        schedule.images_seen(step)))

      for first, count in loop.groups(step, end, per_call, acts_after):
        if count == per_call > 1:
          alphas = np.asarray([stage.alpha(s) for s in range(first, first + count)], np.float32)
          state, metrics = group_step(state, tuple(next(reals) for _ in range(count)), alphas,
                                      lr)
          loop.record(first + count, metrics, count * stage.batch_size,
                      extras(first + count), count)
        else:  # One iteration per call; also the shorter groups before an action or a stop.
          for s in range(first, first + count):
            state, metrics = train_step(state, next(reals), np.float32(stage.alpha(s)), lr)
            loop.record(s + 1, metrics, stage.batch_size, extras(s + 1))
        step = first + count
        alpha = np.float32(stage.alpha(step - 1))
        if loop.itstime(step, t.sample_every_steps):
          _check_samples(loop, monitor, sample_fn, state, step, alpha, writer, workdir, t)
        if fid_due(t.fid_every_images, schedule.images_seen(step - 1),
                   schedule.images_seen(step)):
          _fid_point(config, generator, state, stage.stage, alpha, step,
                     schedule.images_seen(step), writer, workdir)
        if loop.itstime(step, t.checkpoint_every_steps):
          loop.save(step)
  loop.finish()
  return state


def fid_due(every_images: int, images_before: int, images_after: int) -> bool:
  """Whether an iteration that took the images seen from ``images_before`` to
  ``images_after`` crossed a multiple of ``every_images`` (0 = never)."""
  return every_images > 0 and images_after // every_images > images_before // every_images


def _fid_point(config, generator, state, stage: int, alpha, step: int, images: int, writer,
               workdir: str) -> None:
  """FID and KID of the EMA generator now: clu scalars, a console line, ``fid.json``."""
  from layered_gan_jax import evaluation, fid  # pylint: disable=g-import-not-at-top
  gan = restore.LoadedGAN(config, generator, None, state.ema_params, None, stage,
                          float(alpha), step)
  scores = fid.generator_scores(config, gan, config.train.fid_samples,
                                config.seed + evaluation.FID_SEED_OFFSET)
  writer.write_scalars(step, {"fid": scores["fid"], "kid": scores["kid"]})
  logging.info("FID %.3f, KID %.5f at step %d, %d images seen (%d samples, %.0f s)",
               scores["fid"], scores["kid"], step, images, scores["num_generated"],
               scores["seconds"])
  if jax.process_index() == 0:
    path = files.join(workdir, "fid.json")
    points = json.loads(epath.Path(path).read_text()) if epath.Path(path).exists() else []
    points = [p for p in points if p["step"] < step]  # A resumed run redoes later points.
    files.write_json(path, points + [dict(scores, step=step, images_seen=images)])


def _check_samples(loop, monitor, sample_fn, state, step, alpha, writer, workdir, t):
  """Writes the sample grid and tells the collapse monitor its masks; stops on collapse if
  ``train.stop_on_collapse``."""
  layers = write_samples(sample_fn, state, step, alpha, writer, workdir)
  health = collapse.mask_health(layers["mask"])
  writer.write_scalars(step, {f"samples/{k}": v for k, v in health.items()})
  message = monitor.update(step, health)
  if message:
    logging.warning("%s", message)
    if t.stop_on_collapse:
      loop.save_unless_saved(step)
      loop.finish()
      raise errors.Collapsed(f"{message}; stopped after the checkpoint of step {step} "
                               "(train.stop_on_collapse)")


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, name + "."))
    else:
      out[name] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out
