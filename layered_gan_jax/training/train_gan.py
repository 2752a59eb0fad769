"""Training of the layered GAN (``--mode=train``): ``train_and_evaluate(config, workdir)``, the
loop around the compiled iteration of :mod:`layered_gan_jax.training.gan_steps`: the schedule's
stages, the data, the sample grids, FID points, the collapse watch and the checkpoints.
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

from layered_gan_jax import errors, files, parallel, seeds, trees, visualization
from layered_gan_jax.checks import compatibility
from layered_gan_jax.data import train_input
from layered_gan_jax.errors import NonFiniteLossError
from layered_gan_jax.nets import build, compositing, sampler
from layered_gan_jax.run import checkpoints, layout
from layered_gan_jax.training import collapse, gan_steps, loading, states
from layered_gan_jax.training.loop import TrainLoop, metric_writer, writer_lease
from layered_gan_jax.training.schedule import Schedule
from layered_gan_jax.training.states import GANState


def init_state(generator, critic, config) -> GANState:
  """Parameters of every stage, both optimizer states and the EMA copy, replicated."""
  return states.init_replicated(
    states.gan_init_fn(generator, critic, config), config.seed + seeds.GAN_INIT
  )


def make_sample_fn(generator, config, stage: int):
  """``sample(ema_params, alpha) -> (layers, shifted composite)``: the EMA generator on fixed
  latents and noise (derived from the seed inside the compiled function, so every process of a
  multi-host run computes the same grid)."""
  num, seed = config.train.num_samples, config.seed + seeds.GAN_SAMPLE_GRID

  def sample(ema_params, alpha):
    k_z, k_noise, k_pert = jax.random.split(jax.random.PRNGKey(seed), 3)
    z = sampler.latents(k_z, num, config.model.style_dim)
    layers = sampler.layers(generator, ema_params, z, k_noise, stage=stage, alpha=alpha)
    perturbed, _ = compositing.perturb(
      k_pert, layers, shift_fraction=config.perturb.shift, bg_contrast_jitter=0.0
    )
    shifted = compositing.composite(
      perturbed["background"], perturbed["foreground"], perturbed["mask"]
    )
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


def initial_state(
  generator, critic, config, ckpt: checkpoints.Checkpointer
) -> Tuple[GANState, Optional[int]]:
  """The GAN state of the latest intact checkpoint, or a fresh one; and the step restored."""
  items, step = loading.resume(
    ckpt,
    loading.gan_items(init_state(generator, critic, config)),
    "GAN",
    config,
    compatibility.check_saved_model,
  )
  return loading.gan_state_of(items), step


def save_checkpoint(
  ckpt,
  state,
  config,
  schedule,
  step,
  last_good: Optional[int],
  collapse_state: Optional[Dict] = None,
) -> int:
  if not all_finite((state.g_params, state.d_params, state.ema_params)):
    raise NonFiniteLossError(
      f"non-finite parameters at step {step}; no checkpoint written. "
      + errors.last_good(last_good, ckpt.directory)
    )
  stage, alpha = schedule.at(max(step - 1, 0))
  meta = {
    "step": step,
    "stage": stage.stage,
    "resolution": stage.resolution,
    "alpha": alpha,
    "images_seen": schedule.images_seen(step),
  }
  if collapse_state is not None:
    meta["collapse"] = collapse_state
  ckpt.save(
    step, dict(loading.gan_items(state), config=checkpoints.config_to_dict(config), meta=meta)
  )
  logging.info("Saved checkpoint of step %d", step)
  return step


def train_and_evaluate(config, workdir: str) -> GANState:
  """Trains the layered GAN described by ``config`` (validated by the caller: main.py's
  preflight, or ``validate.validate_config``); resumes from ``workdir`` if it holds a
  checkpoint. Returns the final state."""
  workdir = str(files.resolve(workdir))  # Local: absolute; gs://...: as given.
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  t = config.train
  lease = writer_lease(config, files.join(workdir, layout.GAN_DIR), "train")
  ckpt = loading.gan_checkpointer(workdir, t.keep_checkpoints)
  schedule = Schedule(t, config.model.channels)
  writer = metric_writer(workdir)
  state = monitor = None

  def save(step):
    return save_checkpoint(ckpt, state, config, schedule, step, loop.last_saved, monitor.state())

  compiled = {"seconds": 0.0}  # The latest stage's compile time, for the ETA.
  loop = TrainLoop(
    "GAN",
    ckpt,
    writer,
    schedule.max_steps,
    t.log_every_steps,
    save,
    {
      "px": "resolution",
      "critic": "critic_loss",
      "W": "wasserstein",
      "GP": "gradient_penalty",
      "G": "generator_loss",
      "coverage": "mask_coverage",
    },
    eta=lambda step, sps: schedule.eta(step, sps, compiled["seconds"]),
    lease=lease,
  )
  with loop:
    # 1. Restore or initialise, 2. per stage: compile, then iterate over its batches.
    generator, critic = build.build_generator(config), build.build_critic(config)
    state, restored = initial_state(generator, critic, config, ckpt)
    loop.last_saved = restored  # Not a damaged later step the restore skipped.
    monitor = collapse.CollapseMonitor(
      t.collapse_patience,
      None if restored is None else ckpt.read_json(restored, "meta").get("collapse"),
    )
    step = int(jax.device_get(state.step))
    if step == 0:
      writer.write_hparams(
        {
          k: v if isinstance(v, (int, float, str, bool)) else str(v)
          for k, v in trees.flatten(checkpoints.config_to_dict(config)).items()
        }
      )
      logging.info(
        "Generator parameters:\n%s", parameter_overview.get_parameter_overview(state.g_params)
      )
      logging.info(
        "Critic parameters:\n%s", parameter_overview.get_parameter_overview(state.d_params)
      )
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
      train_step, compiled["seconds"], _ = gan_steps.compile_train_step(
        generator, critic, config, stage.stage, state, shape
      )
      per_call = min(t.steps_per_call, end - step)
      if per_call > 1:
        group_step, seconds, _ = gan_steps.compile_train_step(
          generator, critic, config, stage.stage, state, shape, per_call
        )
        compiled["seconds"] += seconds
      sample_fn = make_sample_fn(generator, config, stage.stage)
      iterator = train_input.train_iterator(
        config.data,
        resolution=stage.resolution,
        batch_size=parallel.per_process_batch(stage.batch_size),
        seed=config.seed + seeds.GAN_DATA_STAGE_STRIDE * stage.stage,
        start_index=step - stage.start_step,
      )
      reals = parallel.prefetch_to_device((b["image"] for b in iterator), t.device_prefetch)
      loop.exclude(time.time() - start)  # Step time and images/s: iterations only.
      loop.renew()  # A compile may take minutes.
      lr = np.float32(stage.lr)  # Host scalars: a jnp scalar would be an eager op per step.

      def extras(step, stage=stage):
        return lambda: {
          "resolution": stage.resolution,
          "images_seen": schedule.images_seen(step),
          "learning_rate": stage.lr,
        }

      def acts_after(step):  # Groups of iterations end where something happens.
        return (
          loop.itstime(step, t.sample_every_steps)
          or loop.itstime(step, t.checkpoint_every_steps)
          or fid_due(t.fid_every_images, schedule.images_seen(step - 1), schedule.images_seen(step))
        )

      for first, count in loop.groups(step, end, per_call, acts_after):
        if count == per_call > 1:
          alphas = np.asarray([stage.alpha(s) for s in range(first, first + count)], np.float32)
          state, metrics = group_step(state, tuple(next(reals) for _ in range(count)), alphas, lr)
          loop.record(
            first + count, metrics, count * stage.batch_size, extras(first + count), count
          )
        else:  # One iteration per call; also the shorter groups before an action or a stop.
          for s in range(first, first + count):
            state, metrics = train_step(state, next(reals), np.float32(stage.alpha(s)), lr)
            loop.record(s + 1, metrics, stage.batch_size, extras(s + 1))
        step = first + count
        alpha = np.float32(stage.alpha(step - 1))
        if loop.itstime(step, t.sample_every_steps):
          _check_samples(loop, monitor, sample_fn, state, step, alpha, writer, workdir, t)
        if fid_due(t.fid_every_images, schedule.images_seen(step - 1), schedule.images_seen(step)):
          _fid_point(
            config,
            generator,
            state,
            stage.stage,
            alpha,
            step,
            schedule.images_seen(step),
            writer,
            workdir,
          )
        if loop.itstime(step, t.checkpoint_every_steps):
          loop.save(step)
  loop.finish()
  return state


def fid_due(every_images: int, images_before: int, images_after: int) -> bool:
  """Whether an iteration that took the images seen from ``images_before`` to
  ``images_after`` crossed a multiple of ``every_images`` (0 = never)."""
  return every_images > 0 and images_after // every_images > images_before // every_images


def _fid_point(
  config, generator, state, stage: int, alpha, step: int, images: int, writer, workdir: str
) -> None:
  """FID and KID of the EMA generator now: clu scalars, a console line, ``fid.json``."""
  from layered_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top

  gan = loading.LoadedGAN(
    config, generator, None, state.ema_params, None, stage, float(alpha), step
  )
  scores = fid.generator_scores(
    config, gan, config.train.fid_samples, config.seed + seeds.FID_SAMPLES
  )
  writer.write_scalars(step, {"fid": scores["fid"], "kid": scores["kid"]})
  logging.info(
    "FID %.3f, KID %.5f at step %d, %d images seen (%d samples, %.0f s)",
    scores["fid"],
    scores["kid"],
    step,
    images,
    scores["num_generated"],
    scores["seconds"],
  )
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
      raise errors.Collapsed(
        f"{message}; stopped after the checkpoint of step {step} (train.stop_on_collapse)"
      )
