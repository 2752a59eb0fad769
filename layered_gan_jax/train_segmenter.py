"""The segmenter distilled from the frozen layered generator (``--mode=train_segmenter``).

Every step draws a batch of layers from the EMA generator (random latents and noise, on
device), recomposes them into (image, mask) pairs (``recompose``) and takes one Adam step of
the U-Net (``unet``) on BCE + ``dice_weight`` x (1 - soft Dice), weighted by the mask filter.
No real image is read. Model selection needs no ground truth: a held-out set of recomposed
pairs (fixed latents, ``validation_size``) is scored at every checkpoint, and the parameters
with the best foreground IoU there (``best``) are what evaluation and inference use.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions

from layered_gan_jax import (checkpointing, config_validation, console, parallel, recompose,
                             unet, visualization)
from layered_gan_jax.preemption import Preempted, PreemptionGuard
from layered_gan_jax.state import NetState
from layered_gan_jax.train_gan import LoadedGAN, NonFiniteLossError, load_gan

SEGMENTER_DIR = "segmenter_checkpoints"
ITEMS = ("state", "best", "config", "meta")


def build_unet(segmenter_config) -> unet.UNet:
  return unet.UNet(width=segmenter_config.width, levels=segmenter_config.levels)


def init_params(model: unet.UNet, resolution: int, key):
  return model.init(key, jnp.zeros((1, resolution, resolution, 3)))["params"]


def make_optimizer(s) -> optax.GradientTransformation:
  return optax.adam(optax.cosine_decay_schedule(s.lr, s.max_steps, alpha=0.05))


def make_pair_fn(gan: LoadedGAN, s, batch: int):
  """``pairs(g_params, key) -> (images, labels, weights)``: generated layers recomposed."""
  generator = gan.generator

  def pairs(g_params, key):
    k_z, k_noise, k_rec = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (batch, generator.style_dim))
    z = jax.lax.with_sharding_constraint(z, parallel.batch_sharded())
    layers = generator.apply({"params": g_params}, z, stage=gan.stage, alpha=gan.alpha,
                             rngs={"noise": k_noise})
    return recompose.recompose(k_rec, layers, s)

  return pairs


def foreground_iou(logits, labels):
  """Per-image IoU [N] of ``logits >= 0`` with binary ``labels`` (1 where both are empty)."""
  pred = logits >= 0
  gt = labels >= 0.5
  inter = jnp.sum(pred & gt, axis=(1, 2))
  union = jnp.sum(pred | gt, axis=(1, 2))
  return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)


def make_segmenter_step(model, tx, pair_fn, s):
  """``step(state, g_params) -> (state, metrics)`` (not jitted)."""

  def step(state: NetState, g_params):
    key = jax.random.fold_in(state.rng, state.step)
    images, labels, weights = jax.lax.stop_gradient(pair_fn(g_params, key))

    def loss_fn(params):
      logits = model.apply({"params": params}, images)
      loss, bce = unet.segmentation_loss(logits, labels, s.dice_weight, weights)
      return loss, (bce, logits)

    (loss, (bce, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    kept = jnp.sum(weights)
    iou = jnp.sum(weights * foreground_iou(logits, labels)) / jnp.maximum(kept, 1.0)
    metrics = {"segmenter_loss": loss, "bce": bce, "kept_fraction": jnp.mean(weights),
               "train_fg_iou": iou, "label_coverage": jnp.mean(labels)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


class ValidationSet:
  """Held-out recomposed pairs (fixed latents and placements); no ground truth involved."""

  def __init__(self, gan: LoadedGAN, s, seed: int, model):
    batch = s.batch_size
    pair_fn = jax.jit(make_pair_fn(gan, s, batch))
    key = jax.random.PRNGKey(seed + 777)
    chunks = [jax.device_get(pair_fn(gan.ema_params, jax.random.fold_in(key, i)))
              for i in range(-(-s.validation_size // batch))]
    self.images, self.labels, self.weights = (
        np.concatenate([c[j] for c in chunks])[:s.validation_size] for j in range(3))
    self.kept = float(self.weights.mean())
    self._logits = jax.jit(lambda p, x: model.apply({"params": p}, x))
    self.batch = batch

  def logits(self, params) -> np.ndarray:
    """The segmenter's logits [N, H, W] on the held-out images (one compiled batch shape)."""
    out = []
    for i in range(0, len(self.images), self.batch):
      x = self.images[i:i + self.batch]
      n = len(x)
      if n < self.batch:
        x = np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], x.dtype)])
      out.append(np.asarray(jax.device_get(self._logits(params, parallel.put_batch(x))))[:n])
    return np.concatenate(out)

  def score(self, params) -> float:
    """Mean foreground IoU over the kept pairs (0 when the filter kept none)."""
    ious = np.asarray(foreground_iou(self.logits(params), self.labels))
    w = self.weights
    return float(np.sum(w * ious) / w.sum()) if w.sum() else 0.0


def segmenter_checkpointer(workdir: str, keep: int = 2) -> checkpointing.Checkpointer:
  return checkpointing.Checkpointer(os.path.join(os.path.abspath(workdir), SEGMENTER_DIR),
                                    ITEMS, keep)


def load_segmenter(workdir: str):
  """The selected (``best``) parameters of the distilled segmenter in ``workdir``, without the
  GAN: returns ``(model, params, meta)``; ``meta['resolution']`` is its input size."""
  ckpt = segmenter_checkpointer(workdir)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise config_validation.ConfigError(
        f"no distilled segmenter checkpoint in {ckpt.directory}; train one with "
        "--mode=train_segmenter (or choose --config.segment.route=encoder)")
  saved = ckpt.read_json(step, "config")
  meta = ckpt.read_json(step, "meta")
  import ml_collections  # pylint: disable=g-import-not-at-top
  model = build_unet(ml_collections.ConfigDict(saved["segmenter"]))
  shapes = jax.eval_shape(lambda k: init_params(model, meta["resolution"], k),
                          jax.random.PRNGKey(0))
  repl = parallel.replicated()
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl),
                          shapes)
  params = ckpt.restore(step, {"best": abstract})["best"]
  ckpt.close()
  return model, params, meta


def train_and_evaluate(config, workdir: str) -> NetState:
  """Trains the distilled segmenter of the GAN in ``workdir``; resumes from its checkpoints."""
  config_validation.validate_config(config, "train_segmenter", jax.device_count())
  s = config.segmenter
  gan = load_gan(workdir, config)
  unet.check_resolution(gan.resolution, s.levels)
  model, tx = build_unet(s), make_optimizer(s)
  repl, batch = parallel.replicated(), s.batch_size

  def init(key):
    k_params, k_rng = jax.random.split(key)
    params = init_params(model, gan.resolution, k_params)
    return NetState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                    rng=k_rng)

  state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(config.seed + 314))
  best = jax.tree.map(jnp.copy, state.params)  # Own buffers: the step donates the state's.
  ckpt = segmenter_checkpointer(workdir)
  meta = {"best_step": 0, "best_validation_fg_iou": -1.0}
  if ckpt.latest_step() is not None:
    latest = ckpt.latest_step()
    abstract = checkpointing.abstract_like({"state": state, "best": best})
    restored = ckpt.restore(latest, abstract)
    state, best = restored["state"], restored["best"]
    meta = ckpt.read_json(latest, "meta")
    logging.info("Resumed the distilled segmenter from step %d", latest)
  g_params = parallel.put_replicated(gan.ema_params)
  train_step = jax.jit(make_segmenter_step(model, tx, make_pair_fn(gan, s, batch), s),
                       in_shardings=(repl, repl), out_shardings=(repl, repl),
                       donate_argnums=(0,))
  validation = ValidationSet(gan, s, config.seed, model)
  writer = metric_writers.create_default_writer(os.path.join(workdir, "segmenter"),
                                                just_logging=jax.process_index() > 0)
  logging.info("Training the distilled segmenter at %d px on the GAN of step %d; the mask "
               "filter keeps %.1f %% of the validation pairs", gan.resolution, gan.step,
               100 * validation.kept)
  with PreemptionGuard(ckpt) as preemption:
    return _train(config, workdir, gan, state, best, meta, ckpt, train_step, g_params,
                  validation, writer, preemption)


def _train(config, workdir, gan, state, best, meta, ckpt, train_step, g_params, validation,
           writer, preemption):
  s = config.segmenter
  step = int(jax.device_get(state.step))
  last_saved = ckpt.latest_step()
  report = periodic_actions.ReportProgress(num_train_steps=s.max_steps, writer=writer)
  pending, timer, steps_since = [], time.time(), 0
  meta = dict(meta, gan_step=gan.step, resolution=gan.resolution)
  while step < s.max_steps:
    if preemption.stop_at(step):
      if last_saved != step and step > 0:
        _save(ckpt, state, best, config, step, meta)
      writer.flush()
      ckpt.close()
      raise Preempted(f"segmenter training stopped at step {step} after SIGTERM; rerun the "
                      "same command to resume")
    state, metrics = train_step(state, g_params)
    step += 1
    steps_since += 1
    pending.append(metrics)
    report(step)
    last = step == s.max_steps
    if step % s.log_every_steps == 0 or last:
      summary = {k: float(np.mean([float(m[k]) for m in jax.device_get(pending)]))
                 for k in pending[0]}
      pending = []
      if not all(np.isfinite(v) for v in summary.values()):
        raise NonFiniteLossError(
            f"non-finite segmenter loss at step {step}: {summary}; the last good checkpoint "
            f"is step {last_saved} in {ckpt.directory}")
      elapsed = time.time() - timer
      summary["images_per_s"] = steps_since * s.batch_size / elapsed
      writer.write_scalars(step, summary)
      logging.info("%s", console.progress_line(
          "segmenter", step, s.max_steps,
          {"loss": summary["segmenter_loss"], "train_iou": summary["train_fg_iou"],
           "kept": summary["kept_fraction"]}, summary["images_per_s"], elapsed / steps_since))
      timer, steps_since = time.time(), 0
    if step % s.checkpoint_every_steps == 0 or last:
      score = validation.score(state.params)
      if score > meta["best_validation_fg_iou"]:
        best = jax.tree.map(jnp.copy, state.params)
        meta.update(best_step=step, best_validation_fg_iou=score)
      writer.write_scalars(step, {"validation_fg_iou": score,
                                  "validation_kept_fraction": validation.kept})
      _write_grid(writer, step, state.params, validation)
      last_saved = _save(ckpt, state, best, config, step, meta)
  writer.flush()
  ckpt.close()
  return state


def _write_grid(writer, step, params, validation, n=8):
  logits = validation.logits(params)[:n]
  rows = [visualization.to_uint8(validation.images[:n]),
          visualization.to_uint8(validation.labels[:n, ..., None], (0.0, 1.0)),
          visualization.to_uint8((logits >= 0).astype(np.float32)[..., None], (0.0, 1.0))]
  writer.write_images(step, {"segmenter/pairs_labels_predictions":
                             visualization.grid(rows)[None]})


def _save(ckpt, state, best, config, step: int, meta) -> int:
  ckpt.save(step, {"state": state, "best": best,
                   "config": checkpointing.config_to_dict(config),
                   "meta": dict(meta, step=step)})
  return step
