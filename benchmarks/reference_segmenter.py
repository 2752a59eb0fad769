"""A supervised reference segmenter: the offline stand-in for the poster's COCO Mask R-CNN.

The poster scores generated composites with an off-the-shelf Mask R-CNN ("reference mIoU",
"detected cars"). No such weights can be downloaded here, so on the embedded synthetic dataset we
train our own reference: a small U-Net (flax linen) trained with ground-truth masks of the
synthetic TRAIN split. It plugs into ``evaluation.generated_mask_statistics(segmenter=...)`` /
``evaluation.evaluate(config, workdir, segmenter=...)``, and its score on the synthetic TEST
split (:meth:`ReferenceSegmenter.evaluate_on_test`) is the supervised upper bound of the
unsupervised method.

Model: the project's U-Net (``unet.UNet``). Input: images in [-1, 1].

Training: batch k holds synthetic train examples ``[k B, (k + 1) B)`` (modulo the 20,000-image
split, so a few thousand steps see several epochs), rendered at the training resolution by
``data.synthetic`` in a background thread, each flipped left-right with probability 1/2.
Loss: mean per-pixel binary cross-entropy on the logits + ``dice_weight`` x (1 - soft Dice) per
image. optax Adam, one jitted step.

Detection rule (the "detected" column of the poster): an image counts as having an object iff
at least ``min_fraction`` (default 1 %) of its pixels have a foreground probability >= 0.5;
otherwise the segmenter returns None for it ("no object detected"), as Mask R-CNN returns no
instance. Images of another size than the training resolution are resized to it (PIL
bilinear) and the probability map is resized back (bilinear) before thresholding.

Files: :meth:`ReferenceSegmenter.save` writes one ``.npz``: every parameter array under its
'/'-joined flax path, plus ``__meta__``, a JSON string (architecture, training settings, final
loss). :func:`load` (or ``ReferenceSegmenter.load``) restores it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import time
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import traverse_util
from PIL import Image

from layered_gan_jax import files
from layered_gan_jax.data import synthetic
from layered_gan_jax.metrics import segmentation
from layered_gan_jax.nets import unet
from layered_gan_jax.nets.unet import UNet, segmentation_loss

MIN_FRACTION = 0.01  # Below this predicted-foreground share of the pixels: "no object".
_META_KEY = "__meta__"


def _to_float(images_uint8: np.ndarray) -> np.ndarray:
  return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def _check_images(images) -> np.ndarray:
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
    raise ValueError(f"expected uint8 images [N, H, W, 3], got {x.dtype} {x.shape}")
  return x


class ReferenceSegmenter:
  """A trained U-Net. ``segmenter(images_uint8 [N, H, W, 3])`` -> list of N bool masks [H, W]
  or None (no object detected: fewer than ``min_fraction`` of the pixels predicted foreground).
  """

  def __init__(self, params, meta: Dict):
    self.params = params
    self.meta = dict(meta)
    self.resolution = int(meta["resolution"])
    self.min_fraction = float(meta.get("min_fraction", MIN_FRACTION))
    self.batch_size = int(meta.get("predict_batch_size", 64))
    self.model = UNet(width=int(meta["width"]), levels=int(meta["levels"]))
    self._apply = jax.jit(lambda p, x: jax.nn.sigmoid(self.model.apply({"params": p}, x)))

  # ------------------------------------------------------------------------- prediction

  def predict_proba(self, images) -> np.ndarray:
    """Foreground probabilities float32 [N, H, W] at the images' own size."""
    x = _check_images(images)
    n, h, w = x.shape[:3]
    r = self.resolution
    if (h, w) != (r, r):
      x = (
        np.stack([np.asarray(Image.fromarray(im).resize((r, r), Image.BILINEAR)) for im in x])
        if n
        else np.zeros((0, r, r, 3), np.uint8)
      )
    out = np.zeros((n, r, r), np.float32)
    b = self.batch_size
    for start in range(0, n, b):  # Fixed batch shape: one compile.
      chunk = _to_float(x[start : start + b])
      m = len(chunk)
      if m < b:
        chunk = np.concatenate([chunk, np.zeros((b - m,) + chunk.shape[1:], np.float32)])
      out[start : start + m] = np.asarray(jax.device_get(self._apply(self.params, chunk)))[:m]
    if (h, w) != (r, r):
      out = (
        np.stack([np.asarray(Image.fromarray(p).resize((w, h), Image.BILINEAR)) for p in out])
        if n
        else np.zeros((0, h, w), np.float32)
      )
    return out

  def predict_masks(self, images) -> np.ndarray:
    """Binary masks bool [N, H, W] (probability >= 0.5), without the detection rule."""
    return self.predict_proba(images) >= 0.5

  def __call__(self, images) -> List[Optional[np.ndarray]]:
    masks = self.predict_masks(images)
    return [m if m.mean() >= self.min_fraction else None for m in masks]

  # ------------------------------------------------------------------------- evaluation

  def evaluate_on_test(
    self,
    num_examples: int = 1000,
    resolution: Optional[int] = None,
    dataset_seed: int = 0,
    layout: synthetic.Layout = synthetic.LAYOUT,
  ) -> Dict[str, float]:
    """Metrics on the first ``num_examples`` images of the synthetic TEST split rendered at
    ``resolution`` (default: the training resolution): the supervised upper bound.

    Returns ``fg_iou`` (per-image foreground IoU averaged over images), ``miou`` (two-class),
    ``pixel_accuracy``, ``max_fbeta`` (on the probabilities), ``detected_fraction`` (share of
    images passing the detection rule), ``num_images``, ``resolution``.
    """
    r = int(resolution or self.resolution)
    n = min(int(num_examples), synthetic.SPLIT_SIZES["test"])
    data = synthetic.generate("test", 0, n, r, dataset_seed, layout)
    gt = data["mask"].astype(bool)
    proba = self.predict_proba(data["image"])
    result = segmentation.segmentation_metrics(proba >= 0.5, gt, scores=proba)
    result["detected_fraction"] = float(
      np.mean((proba >= 0.5).mean(axis=(1, 2)) >= self.min_fraction)
    )
    result["num_images"] = int(n)
    result["resolution"] = r
    return result

  # ------------------------------------------------------------------------- files

  def save(self, path: str) -> None:
    """One .npz: parameters under their '/'-joined paths, and ``__meta__`` (JSON)."""
    flat = traverse_util.flatten_dict(jax.device_get(self.params), sep="/")
    arrays = {k: np.asarray(v) for k, v in flat.items()}
    arrays[_META_KEY] = np.asarray(json.dumps(self.meta))
    with files.atomic_path(path, ".tmp.npz") as tmp:  # np.savez appends .npz to other names.
      np.savez(tmp, **arrays)

  @classmethod
  def load(cls, path: str) -> "ReferenceSegmenter":
    with np.load(path, allow_pickle=False) as f:
      meta = json.loads(str(f[_META_KEY]))
      flat = {k: jnp.asarray(f[k]) for k in f.files if k != _META_KEY}
    return cls(traverse_util.unflatten_dict(flat, sep="/"), meta)


def load(path: str) -> ReferenceSegmenter:
  return ReferenceSegmenter.load(path)


# --------------------------------------------------------------------------------- training


def _train_batch(
  step: int,
  batch_size: int,
  resolution: int,
  seed: int,
  dataset_seed: int,
  layout: synthetic.Layout,
):
  """Synthetic train examples [k B, (k + 1) B) mod the split, random left-right flips."""
  n = synthetic.SPLIT_SIZES["train"]
  start = (step * batch_size) % n
  idx = [(start + i) % n for i in range(batch_size)]
  images = np.empty((batch_size, resolution, resolution, 3), np.uint8)
  masks = np.empty((batch_size, resolution, resolution), np.float32)
  for j, i in enumerate(idx):
    images[j], masks[j] = synthetic.render_example("train", i, resolution, dataset_seed, layout)
  flip = np.random.default_rng([seed, step]).random(batch_size) < 0.5
  images[flip] = images[flip, :, ::-1]
  masks[flip] = masks[flip, :, ::-1]
  return _to_float(images), masks


def train_reference_segmenter(
  resolution: int = 32,
  steps: int = 2000,
  seed: int = 0,
  batch_size: int = 32,
  width: int = 16,
  levels: int = 4,
  lr: float = 2e-3,
  dice_weight: float = 0.5,
  min_fraction: float = MIN_FRACTION,
  dataset_seed: int = 0,
  layout: synthetic.Layout = synthetic.LAYOUT,
  log_every: int = 200,
  loss_history: Optional[list] = None,
) -> ReferenceSegmenter:
  """Trains the U-Net on the synthetic train split at ``resolution`` (16, 32, 64 or 128) for
  ``steps`` Adam steps (cosine decay from ``lr``). If ``loss_history`` is a list, the total loss
  of every step is appended to it. Returns the trained :class:`ReferenceSegmenter`."""
  resolution = synthetic.check_resolution(resolution)
  unet.check_resolution(resolution, levels)
  if steps <= 0 or batch_size <= 0 or width <= 0:
    raise ValueError("steps, batch_size and width must be positive")
  model = UNet(width=width, levels=levels)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))

  @jax.jit
  def init(key):  # Compiled: op-by-op initialisation is much slower on a CPU.
    params = model.init(key, jnp.zeros((1, resolution, resolution, 3)))["params"]
    return params, tx.init(params)

  params, opt_state = init(jax.random.PRNGKey(seed))

  @jax.jit
  def train_step(params, opt_state, images, masks):
    def loss_fn(p):
      return segmentation_loss(model.apply({"params": p}, images), masks, dice_weight)

    (loss, bce), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, bce

  t0 = time.time()
  losses = []
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    make = lambda k: pool.submit(
      _train_batch, k, batch_size, resolution, seed, dataset_seed, layout
    )
    pending = make(0)
    for step in range(steps):
      images, masks = pending.result()
      if step + 1 < steps:
        pending = make(step + 1)  # Rendered while the step runs.
      params, opt_state, loss, bce = train_step(params, opt_state, images, masks)
      losses.append(loss)
      if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
        recent = float(np.mean(jax.device_get(losses[-log_every:])))
        logging.info(
          "reference segmenter step %d/%d: loss %.4f (bce %.4f), %.1f s",
          step + 1,
          steps,
          recent,
          float(bce),
          time.time() - t0,
        )
  losses = [float(v) for v in jax.device_get(losses)]
  if loss_history is not None:
    loss_history.extend(losses)
  tail = max(1, min(100, steps // 10))
  meta = {
    "resolution": resolution,
    "width": width,
    "levels": levels,
    "steps": steps,
    "seed": seed,
    "batch_size": batch_size,
    "lr": lr,
    "dice_weight": dice_weight,
    "min_fraction": min_fraction,
    "dataset_seed": dataset_seed,
    "layout": json.loads(json.dumps(dataclasses.asdict(layout))),
    "final_loss": float(np.mean(losses[-tail:])),
    "train_seconds": time.time() - t0,
    "predict_batch_size": 64,
  }
  return ReferenceSegmenter(params, meta)
