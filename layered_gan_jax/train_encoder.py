"""Training of the segmentation encoders against the frozen EMA generator and critic.

``L_auto = |x_E - x|_1 + feature_weight * |D_feat(x_E) - D_feat(x)|^2`` with ``x_E = G(E(x))``
(unperturbed composite, fixed generator noise) and ``D_feat`` the critic's 4x4 features; plus,
optionally, ``latent_weight`` x the error of the encoder on generated images whose latent is
known.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions

from layered_gan_jax import (checkpointing, compositing, config_validation, console,
                             losses, parallel, visualization)
from layered_gan_jax import encoder as encoder_lib
from layered_gan_jax import generator as generator_lib
from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import train as train_data
from layered_gan_jax.preemption import Preempted, PreemptionGuard
from layered_gan_jax.state import NetState
from layered_gan_jax.train_gan import LoadedGAN, NonFiniteLossError, load_gan

ENCODER_DIR = "encoder_checkpoints"
ITEMS = ("state", "config", "meta")
# Encoder fields that decide its parameters' shapes (a checkpoint restores only with the same).
SHAPE_FIELDS = ("target", "width", "max_width", "blocks_per_stage", "predict_placement")


class EncoderSetup:
  """Everything needed to run a trained or training encoder."""

  def __init__(self, config, gan: LoadedGAN):
    self.config, self.gan = config, gan
    self.encoder = encoder_lib.build_encoder(config, gan.generator, gan.stage)
    w_avg = generator_lib.mean_styles(gan.generator, gan.ema_params,
                                      jax.random.PRNGKey(config.seed + 4242))
    self.frozen = parallel.put_replicated({"g": gan.ema_params, "d": gan.d_params,
                                           "w_avg": w_avg})
    self.decode = encoder_lib.make_decode_fn(gan, config.encoder.target, config.encoder.noise,
                                             config.seed)
    self.reconstruct = encoder_lib.make_reconstruct_fn(
        self.encoder, gan, config.encoder.target, config.encoder.noise, config.seed)
    self.tx = optax.adam(config.encoder.lr)

  def init_state(self) -> NetState:
    r = self.gan.resolution

    def init(key):
      k_params, k_rng = jax.random.split(key)
      params = self.encoder.init(k_params, jnp.zeros((1, r, r, 3)))["params"]
      return NetState(step=jnp.zeros([], jnp.int32), params=params,
                          opt_state=self.tx.init(params), rng=k_rng)

    return jax.jit(init, out_shardings=parallel.replicated())(
        jax.random.PRNGKey(self.config.seed + 99))

  def features(self, d_params, x):
    """The critic's 4x4 features of images ``x`` (the feature term of ``L_auto``)."""
    gan = self.gan
    return gan.critic.apply({"params": d_params}, x, stage=gan.stage, alpha=gan.alpha,
                            return_features=True)[1]

  def predict_fn(self):
    """jitted ``(enc_params, frozen, images) -> (layers, composite)``; with
    ``encoder.refine_steps`` > 0, the encoder's prediction is refined per batch by that many
    Adam steps (``encoder.refine_lr``) on the training reconstruction loss before decoding."""
    e = self.config.encoder
    if not e.refine_steps:
      return jax.jit(self.reconstruct)
    tx = optax.adam(e.refine_lr)

    def refined(enc_params, frozen, images):
      pred = self.encoder.apply({"params": enc_params}, images)
      target = jax.lax.stop_gradient(self.features(frozen["d"], images))

      def loss_fn(p):
        _, recon = self.decode(p, frozen)
        return losses.reconstruction_loss(recon, images, self.features(frozen["d"], recon),
                                          target, feature_weight=e.feature_weight)[0]

      def body(_, carry):
        p, opt_state = carry
        updates, opt_state = tx.update(jax.grad(loss_fn)(p), opt_state, p)
        return optax.apply_updates(p, updates), opt_state

      pred, _ = jax.lax.fori_loop(0, e.refine_steps, body, (pred, tx.init(pred)))
      return self.decode(pred, frozen)

    return jax.jit(refined)


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
          recon, images, features(frozen["d"], recon), target_features,
          feature_weight=e.feature_weight)
      if e.latent_weight > 0:
        z = jax.random.normal(key, (images.shape[0], generator.style_dim))
        noise = encoder_lib.fixed_noise(e.noise, generator, images.shape[0], stage,
                                        setup.config.seed)
        gen = generator.apply({"params": frozen["g"]}, z, stage=stage, alpha=gan.alpha,
                              noise=noise)
        x_gen = jax.lax.stop_gradient(
            compositing.composite(gen["background"], gen["foreground"], gen["mask"]))
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


def encoder_checkpointer(workdir: str, keep: int = 3) -> checkpointing.Checkpointer:
  return checkpointing.Checkpointer(os.path.join(os.path.abspath(workdir), ENCODER_DIR), ITEMS,
                                    keep)


def load_encoder(config, workdir: str):
  """Restores the GAN and the latest encoder of ``workdir``: returns (setup, encoder params)."""
  gan = load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  ckpt = encoder_checkpointer(workdir)
  step = ckpt.latest_step()
  if step is None:
    raise config_validation.ConfigError(
        f"no encoder checkpoint in {ckpt.directory}; train one with --mode=train_encoder")
  saved = ckpt.read_json(step, "config").get("encoder", {})
  diffs = [f"encoder.{k}: checkpoint {saved.get(k, False)!r} vs config {config.encoder[k]!r}"
           for k in SHAPE_FIELDS if saved.get(k, False) != config.encoder[k]]
  if diffs:
    ckpt.close()
    raise config_validation.ConfigError(
        f"the encoder checkpoint in {ckpt.directory} holds another encoder: " + "; ".join(diffs)
        + ". Use the settings it was trained with")
  abstract = checkpointing.abstract_like(setup.init_state())
  state = ckpt.restore(step, {"state": abstract})["state"]
  ckpt.close()
  return setup, state.params


def train_and_evaluate(config, workdir: str) -> NetState:
  """Trains the encoder of the GAN in ``workdir``; resumes from its own checkpoints."""
  config_validation.validate_config(config, "train_encoder", jax.device_count())
  data_config.validate_data_config(config.data)
  e = config.encoder
  gan = load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  ckpt = encoder_checkpointer(workdir)
  state = setup.init_state()
  if ckpt.latest_step() is not None:
    state = ckpt.restore(ckpt.latest_step(), {"state": checkpointing.abstract_like(state)})["state"]
    logging.info("Resumed the encoder from step %d", ckpt.latest_step())
  step = int(jax.device_get(state.step))
  repl, data = parallel.replicated(), parallel.batch_sharded()
  train_step = jax.jit(make_encoder_step(setup), in_shardings=(repl, repl, data),
                       out_shardings=(repl, repl), donate_argnums=(0,))
  predict = setup.predict_fn()
  writer = metric_writers.create_default_writer(os.path.join(workdir, "encoder"),
                                                just_logging=jax.process_index() > 0)
  report = periodic_actions.ReportProgress(num_train_steps=e.max_steps, writer=writer)
  iterator = train_data.train_iterator(
      config.data, resolution=gan.resolution,
      batch_size=parallel.per_process_batch(e.batch_size), seed=config.seed + 555,
      start_index=step)
  logging.info("Training the %s encoder at %d px on the GAN of step %d", e.target,
               gan.resolution, gan.step)
  with PreemptionGuard(ckpt) as preemption:
    return _train(setup, config, state, step, ckpt, train_step, predict, writer, report,
                  iterator, preemption)


def _train(setup, config, state, step, ckpt, train_step, predict, writer, report, iterator,
           preemption):
  e, gan, last_saved = config.encoder, setup.gan, ckpt.latest_step()
  pending, timer, steps_since = [], time.time(), 0
  while step < e.max_steps:
    if preemption.stop_at(step):
      if last_saved != step and step > 0:
        _save(ckpt, state, config, step, gan)
      writer.flush()
      ckpt.close()
      raise Preempted(f"encoder training stopped at step {step} after SIGTERM; rerun the same "
                      "command to resume")
    images = parallel.put_batch(next(iterator)["image"])
    state, metrics = train_step(state, setup.frozen, images)
    step += 1
    steps_since += 1
    pending.append(metrics)
    report(step)
    last = step == e.max_steps
    if step % e.log_every_steps == 0 or last:
      summary = {k: float(np.mean([float(m[k]) for m in jax.device_get(pending)]))
                 for k in pending[0]}
      pending = []
      if not all(np.isfinite(v) for v in summary.values()):
        raise NonFiniteLossError(f"non-finite encoder loss at step {step}: {summary}")
      elapsed = time.time() - timer
      summary["images_per_s"] = steps_since * e.batch_size / elapsed
      writer.write_scalars(step, summary)
      logging.info("%s", console.progress_line(
          "encoder", step, e.max_steps,
          {"loss": summary["encoder_loss"], "L1": summary["l1"],
           "feature": summary["feature_loss"], "coverage": summary["mask_coverage"]},
          summary["images_per_s"], elapsed / steps_since))
      timer, steps_since = time.time(), 0
    if step % e.checkpoint_every_steps == 0 or last:
      layers, recon = jax.device_get(predict(state.params, setup.frozen, images))
      x = np.asarray(jax.device_get(images))[:8]
      rows = [visualization.to_uint8(x), visualization.to_uint8(recon[:8]),
              visualization.to_uint8(layers["mask"][:8], (0.0, 1.0))]
      writer.write_images(step, {"encoder/image_reconstruction_mask":
                                 visualization.grid(rows)[None]})
      last_saved = _save(ckpt, state, config, step, gan)
  writer.flush()
  ckpt.close()
  return state


def _save(ckpt, state, config, step: int, gan) -> int:
  ckpt.save(step, {"state": state, "config": checkpointing.config_to_dict(config),
                   "meta": {"step": step, "gan_step": gan.step}})
  return step
