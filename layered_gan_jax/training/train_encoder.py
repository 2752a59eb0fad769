"""Training of the segmentation encoders against the frozen EMA generator and critic.

``L_auto = |x_E - x|_1 + feature_weight * |D_feat(x_E) - D_feat(x)|^2`` with ``x_E = G(E(x))``
(unperturbed composite, fixed generator noise) and ``D_feat`` the critic's 4x4 features; plus,
optionally, ``latent_weight`` x the error of the encoder on generated images whose latent is
known.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from layered_gan_jax import files, parallel, seeds, visualization
from layered_gan_jax.checks import compatibility
from layered_gan_jax.data import train_input
from layered_gan_jax.nets import compositing
from layered_gan_jax.nets import encoder as encoder_lib
from layered_gan_jax.nets import generator as generator_lib
from layered_gan_jax.run import checkpoints, layout
from layered_gan_jax.training import loading, losses
from layered_gan_jax.training.encoder_setup import EncoderSetup
from layered_gan_jax.training.loop import TrainLoop, metric_writer, writer_lease
from layered_gan_jax.training.states import NetState


def latent_loss(pred, z, target, generator, g_params, w_avg, stage):
  """Error of the encoder's prediction on a generated image with latent ``z``."""
  if target == "z":
    return jnp.mean(jnp.square(pred["shared"] - z))
  if target == "z_per_generator":
    return jnp.mean(jnp.stack([jnp.mean(jnp.square(v - z)) for v in pred.values()]))
  w_true = generator.apply({"params": g_params}, z, method=generator_lib.LayeredGenerator.map)
  errs = []
  for n, v in pred.items():
    true = w_true[n] - w_avg[n]
    errs.append(jnp.mean(jnp.square(v - (true if target == "w" else true[:, None]))))
  return jnp.mean(jnp.stack(errs))


def make_encoder_step(setup: EncoderSetup):
  """``step(state, frozen, images) -> (state, metrics)`` (not jitted)."""
  e, gan = setup.config.encoder, setup.gan
  generator, stage = gan.generator, gan.stage
  features = setup.features

  def step(state: NetState, frozen, images):
    key = jax.random.fold_in(state.rng, state.step)
    target_features = jax.lax.stop_gradient(features(frozen["d"], images))

    def loss_fn(params):
      layers, recon = setup.reconstruct(params, frozen, images)
      loss, metrics = losses.reconstruction_loss(
        recon,
        images,
        features(frozen["d"], recon),
        target_features,
        feature_weight=e.feature_weight,
      )
      if e.latent_weight > 0:
        z = jax.random.normal(key, (images.shape[0], generator.style_dim))
        noise = encoder_lib.fixed_noise(
          e.noise, generator, images.shape[0], stage, setup.config.seed
        )
        gen = generator.apply({"params": frozen["g"]}, z, stage=stage, alpha=gan.alpha, noise=noise)
        x_gen = jax.lax.stop_gradient(
          compositing.composite(gen["background"], gen["foreground"], gen["mask"])
        )
        pred = setup.encoder.apply({"params": params}, x_gen)
        pred.pop(encoder_lib.PLACEMENT, None)  # Generated images are never moved.
        lat = latent_loss(pred, z, e.target, generator, frozen["g"], frozen["w_avg"], stage)
        loss = loss + e.latent_weight * lat
        metrics.update(latent_loss=lat, encoder_loss=loss)
      metrics["mask_coverage"] = jnp.mean(layers["mask"])
      return loss, metrics

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


def train_and_evaluate(config, workdir: str) -> NetState:
  """Trains the encoder of the GAN in ``workdir`` (``config`` validated by the caller);
  resumes from its own checkpoints."""
  e = config.encoder
  lease = writer_lease(config, files.join(workdir, layout.ENCODER_DIR), "train_encoder")
  gan = loading.load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  ckpt = loading.encoder_checkpointer(workdir)
  items, _ = loading.resume(
    ckpt, {"state": setup.init_state()}, "encoder", config, compatibility.check_saved_encoder
  )
  state = items["state"]
  step = int(jax.device_get(state.step))
  repl, data = parallel.replicated(), parallel.batch_sharded()
  train_step = jax.jit(
    make_encoder_step(setup),
    in_shardings=(repl, repl, data),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  predict = setup.predict_fn()
  writer = metric_writer(files.join(workdir, "encoder"))
  iterator = train_input.train_iterator(
    config.data,
    resolution=gan.resolution,
    batch_size=parallel.per_process_batch(e.batch_size),
    seed=config.seed + seeds.ENCODER_DATA,
    start_index=step,
  )
  logging.info(
    "Training the %s encoder at %d px on the GAN of step %d", e.target, gan.resolution, gan.step
  )

  def save(step):
    ckpt.save(
      step,
      {
        "state": state,
        "config": checkpoints.config_to_dict(config),
        "meta": {"step": step, "gan_step": gan.step},
      },
    )
    return step

  loop = TrainLoop(
    "encoder",
    ckpt,
    writer,
    e.max_steps,
    e.log_every_steps,
    save,
    {"loss": "encoder_loss", "L1": "l1", "feature": "feature_loss", "coverage": "mask_coverage"},
    lease=lease,
  )
  with loop:
    for step in loop.steps(step):
      images = parallel.put_batch(next(iterator)["image"])
      state, metrics = train_step(state, setup.frozen, images)
      step += 1
      loop.record(step, metrics, e.batch_size)
      if loop.itstime(step, e.checkpoint_every_steps):
        layers, recon = jax.device_get(predict(state.params, setup.frozen, images))
        x = np.asarray(jax.device_get(images))[:8]
        rows = [
          visualization.to_uint8(x),
          visualization.to_uint8(recon[:8]),
          visualization.to_uint8(layers["mask"][:8], (0.0, 1.0)),
        ]
        writer.write_images(
          step, {"encoder/image_reconstruction_mask": visualization.grid(rows)[None]}
        )
        loop.save(step)
  loop.finish()
  return state
