"""The segmenter distilled from the frozen layered generator (``--mode=train_segmenter``).

Every step draws a batch of layers from the EMA generator (random latents and noise, on
device), recomposes them into (image, mask) pairs (``recompose``) and takes one Adam step of
the U-Net (``unet``) on BCE + ``dice_weight`` x (1 - soft Dice), weighted by the mask filter.
No real image is read. Model selection needs no ground truth: a held-out set of recomposed
pairs (fixed latents, ``validation_size``) is scored at every checkpoint, and the parameters
with the best foreground IoU there (``best``) are what evaluation and inference use.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from layered_gan_jax import files, parallel, seeds, visualization
from layered_gan_jax.nets import build, recompose, sampler, unet
from layered_gan_jax.run import checkpoints, layout
from layered_gan_jax.training import loading, states
from layered_gan_jax.training.loop import TrainLoop, metric_writer, writer_lease
from layered_gan_jax.training.states import NetState


def make_optimizer(s) -> optax.GradientTransformation:
  return optax.adam(optax.cosine_decay_schedule(s.lr, s.max_steps, alpha=0.05))


def make_pair_fn(gan, s, batch: int):
  """``pairs(g_params, key) -> (images, labels, weights)``: generated layers recomposed."""
  generator = gan.generator

  def pairs(g_params, key):
    k_z, k_noise, k_rec = jax.random.split(key, 3)
    z = sampler.latents(k_z, batch, generator.style_dim)
    z = jax.lax.with_sharding_constraint(z, parallel.batch_sharded())
    layers = sampler.layers(generator, g_params, z, k_noise, stage=gan.stage, alpha=gan.alpha)
    return recompose.recompose(k_rec, layers, s)

  return pairs


def logits_iou(logits, labels):
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
    iou = jnp.sum(weights * logits_iou(logits, labels)) / jnp.maximum(kept, 1.0)
    metrics = {
      "segmenter_loss": loss,
      "bce": bce,
      "kept_fraction": jnp.mean(weights),
      "train_fg_iou": iou,
      "label_coverage": jnp.mean(labels),
    }
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


class ValidationSet:
  """Held-out recomposed pairs (fixed latents and placements); no ground truth involved."""

  def __init__(self, gan, s, seed: int, model):
    batch = s.batch_size
    pair_fn = jax.jit(make_pair_fn(gan, s, batch))
    key = jax.random.PRNGKey(seed + seeds.SEGMENTER_VALIDATION)
    chunks = [
      jax.device_get(pair_fn(gan.ema_params, jax.random.fold_in(key, i)))
      for i in range(-(-s.validation_size // batch))
    ]
    self.images, self.labels, self.weights = (
      np.concatenate([c[j] for c in chunks])[: s.validation_size] for j in range(3)
    )
    self.kept = float(self.weights.mean())
    self._logits = jax.jit(lambda p, x: model.apply({"params": p}, x))
    self.batch = batch

  def logits(self, params) -> np.ndarray:
    """The segmenter's logits [N, H, W] on the held-out images (one compiled batch shape)."""
    out = []
    for i in range(0, len(self.images), self.batch):
      x = self.images[i : i + self.batch]
      n = len(x)
      if n < self.batch:
        x = np.concatenate([x, np.zeros((self.batch - n,) + x.shape[1:], x.dtype)])
      out.append(np.asarray(jax.device_get(self._logits(params, parallel.put_batch(x))))[:n])
    return np.concatenate(out)

  def score(self, params) -> float:
    """Mean foreground IoU over the kept pairs (0 when the filter kept none)."""
    ious = np.asarray(logits_iou(self.logits(params), self.labels))
    w = self.weights
    return float(np.sum(w * ious) / w.sum()) if w.sum() else 0.0


def train_and_evaluate(config, workdir: str) -> NetState:
  """Trains the distilled segmenter of the GAN in ``workdir`` (``config`` validated by the
  caller); resumes from its checkpoints."""
  s = config.segmenter
  lease = writer_lease(config, files.join(workdir, layout.SEGMENTER_DIR), "train_segmenter")
  gan = loading.load_gan(workdir, config)
  unet.check_resolution(gan.resolution, s.levels)
  model, tx = build.build_unet(s), make_optimizer(s)
  repl, batch = parallel.replicated(), s.batch_size
  state = states.init_replicated(
    states.net_init_fn(lambda k: build.init_unet(model, gan.resolution, k), tx),
    config.seed + seeds.SEGMENTER_INIT,
  )
  best = jax.tree.map(jnp.copy, state.params)  # Own buffers: the step donates the state's.
  ckpt = loading.segmenter_checkpointer(workdir)
  items, latest = loading.resume(ckpt, {"state": state, "best": best}, "distilled segmenter")
  state, best = items["state"], items["best"]
  meta = (
    {"best_step": 0, "best_validation_fg_iou": -1.0}
    if latest is None
    else ckpt.read_json(latest, "meta")
  )
  g_params = parallel.put_replicated(gan.ema_params)
  train_step = jax.jit(
    make_segmenter_step(model, tx, make_pair_fn(gan, s, batch), s),
    in_shardings=(repl, repl),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  validation = ValidationSet(gan, s, config.seed, model)
  writer = metric_writer(files.join(workdir, "segmenter"))
  logging.info(
    "Training the distilled segmenter at %d px on the GAN of step %d; the mask "
    "filter keeps %.1f %% of the validation pairs",
    gan.resolution,
    gan.step,
    100 * validation.kept,
  )
  meta = dict(meta, gan_step=gan.step, resolution=gan.resolution)

  def save(step):
    ckpt.save(
      step,
      {
        "state": state,
        "best": best,
        "config": checkpoints.config_to_dict(config),
        "meta": dict(meta, step=step),
      },
    )
    return step

  loop = TrainLoop(
    "segmenter",
    ckpt,
    writer,
    s.max_steps,
    s.log_every_steps,
    save,
    {"loss": "segmenter_loss", "train_iou": "train_fg_iou", "kept": "kept_fraction"},
    lease=lease,
  )
  with loop:
    for step in loop.steps(int(jax.device_get(state.step))):
      state, metrics = train_step(state, g_params)
      step += 1
      loop.record(step, metrics, s.batch_size)
      if loop.itstime(step, s.checkpoint_every_steps):
        score = validation.score(state.params)
        if score > meta["best_validation_fg_iou"]:
          best = jax.tree.map(jnp.copy, state.params)
          meta.update(best_step=step, best_validation_fg_iou=score)
        writer.write_scalars(
          step, {"validation_fg_iou": score, "validation_kept_fraction": validation.kept}
        )
        _write_grid(writer, step, state.params, validation)
        loop.save(step)
  loop.finish()
  return state


def _write_grid(writer, step, params, validation, n=8):
  logits = validation.logits(params)[:n]
  rows = [
    visualization.to_uint8(validation.images[:n]),
    visualization.to_uint8(validation.labels[:n, ..., None], (0.0, 1.0)),
    visualization.to_uint8((logits >= 0).astype(np.float32)[..., None], (0.0, 1.0)),
  ]
  writer.write_images(step, {"segmenter/pairs_labels_predictions": visualization.grid(rows)[None]})
