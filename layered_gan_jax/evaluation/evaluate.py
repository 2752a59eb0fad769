"""Evaluation: real-image segmentation against ground truth (with the poster's baselines) and
statistics of the generated masks (with an optional external segmenter, e.g. Mask R-CNN).

Every trained segmentation route (``inference.load_route``: the distilled segmenter's
probabilities, or the generator's mask of G(E(x))) is scored on the same images; a predicted
mask is the soft mask thresholded at 0.5, resized to the ground-truth size.
Metrics (see ``metrics``): per-image foreground IoU averaged over images (``fg_iou``, primary),
two-class mean IoU (``miou``), pixel accuracy, max F-beta (beta^2 = 0.3). With several
evaluation sources (e.g. one per object category), every figure is also given per source.
"""

import importlib
import json
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
import numpy as np
from absl import logging
from etils import epath

from layered_gan_jax import files, seeds, visualization
from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import eval_input
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.evaluation import inference
from layered_gan_jax.metrics import baselines, fid, segmentation
from layered_gan_jax.nets import sampler
from layered_gan_jax.training import loading, loop

EVAL_DIR = "eval"


class Split(NamedTuple):
  """An evaluation split, as :func:`load_split` reads it."""

  batches: List[Tuple[np.ndarray, np.ndarray]]  # (float images [B, R, R, 3], valid [B]).
  gt: np.ndarray  # Ground-truth masks [N, R, R] of the valid rows, in order.
  source: np.ndarray  # int32 [N]: which of source_names each image is from.
  source_names: List[str]


def load_split(data_cfg, resolution: int, batch_size: int, max_examples: Optional[int]) -> Split:
  """The evaluation split at ``resolution``: float images [N, R, R, 3] in [-1, 1] and the
  ground-truth masks, in batches of ``batch_size`` (the last one padded; ``valid`` marks real
  rows), and the source of every image (several with ``data_cfg.sources``; ``max_examples``
  applies to each)."""
  batches, gts, labels = [], [], []
  iterator = eval_input.eval_dataset(
    data_cfg, resolution=resolution, batch_size=batch_size, split="test", max_examples=max_examples
  )
  for batch in iterator:
    valid = np.asarray(batch["valid"], bool)
    batches.append((np.asarray(batch["image"], np.float32), valid))
    gts.append(np.asarray(batch["mask"])[valid])
    labels.append(np.asarray(batch["source"])[valid])
  if not batches:
    raise ValueError("the evaluation split is empty")
  return Split(batches, np.concatenate(gts), np.concatenate(labels), iterator.source_names)


def predict_route(route, batches) -> np.ndarray:
  """Soft masks [N, R, R] of a route on the batches of :func:`load_split`."""
  return np.concatenate([route.predict(x)[valid] for x, valid in batches])


def score_masks(pred_soft: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
  gt_bin = segmentation.binarize(gt)
  if pred_soft.shape[1:] != gt_bin.shape[1:]:
    pred_soft = np.stack([segmentation.resize_to(p >= 0.5, gt_bin.shape[1:]) for p in pred_soft])
  return segmentation.segmentation_metrics(pred_soft >= 0.5, gt_bin, scores=pred_soft)


def baseline_masks(images: np.ndarray, names) -> Dict[str, np.ndarray]:
  """Each named baseline's masks [N, H, W] of uint8 ``images`` [N, H, W, 3]."""
  out = {}
  for name in names:
    if name not in baselines.BASELINES:
      raise ValueError(f"unknown baseline {name!r}; choose from {sorted(baselines.BASELINES)}")
    out[name] = baselines.BASELINES[name](images)
  return out


def score_baselines(masks: Dict[str, np.ndarray], gt: np.ndarray) -> Dict[str, Dict[str, float]]:
  gt_bin = segmentation.binarize(gt)
  return {name: segmentation.segmentation_metrics(m, gt_bin) for name, m in masks.items()}


def per_source_metrics(
  route_soft: Dict[str, np.ndarray],
  baseline: Dict[str, np.ndarray],
  gt: np.ndarray,
  source: np.ndarray,
  names,
) -> Dict[str, Dict]:
  """Every route's (soft masks) and baseline's (masks) figures on the images of each source:
  ``{name: {"num_images", "routes": {route: metrics}, "baselines": {baseline: metrics}}}``,
  scored as on the whole split."""
  source = np.asarray(source)
  out = {}
  for j, name in enumerate(names):
    sel = source == j
    out[name] = {"num_images": int(sel.sum())}
    if sel.any():
      out[name]["routes"] = {r: score_masks(m[sel], gt[sel]) for r, m in route_soft.items()}
      out[name]["baselines"] = score_baselines({b: m[sel] for b, m in baseline.items()}, gt[sel])
  return out


def load_external_segmenter(spec: str):
  """'package.module:function' -> the function. It takes uint8 images [N, H, W, 3] and returns
  one boolean mask [H, W] per image, or None where it detects no object."""
  module_name, _, fn_name = spec.partition(":")
  if not fn_name:
    raise ValueError(f"eval.external_segmenter={spec!r} must look like 'module:function'")
  return getattr(importlib.import_module(module_name), fn_name)


def generated_mask_statistics(
  gan, num: int, seed: int, batch: int = 64, segmenter: Optional[Callable] = None
) -> Dict[str, float]:
  """Mask coverage / binarization of the EMA generator on ``num`` random latents; with an
  external segmenter, also the poster's generated-image protocol: the share of composites where
  it detects an object and the IoU of the generator's mask with its mask on those."""
  return sample_mask_statistics(*sampler.masks_and_composites(gan, num, seed, batch), segmenter)


def sample_mask_statistics(
  masks: np.ndarray, composites: np.ndarray, segmenter: Optional[Callable] = None, batch: int = 64
) -> Dict[str, float]:
  """Statistics of generated masks [N, H, W] in [0, 1] and their composites [N, H, W, 3] in
  [-1, 1]: mean coverage, share of near-binary pixels, the spread of the binarized coverage
  and of the binarized mask's centroid (px) over samples; with an external segmenter, the
  share of composites where it finds an object and the IoU of the generator's mask with its
  mask there (also with the generator's mask inverted)."""
  masks = np.asarray(masks, np.float32)
  per_image_cov = (masks >= 0.5).mean(axis=(1, 2))
  out = {
    "mask_coverage": float(masks.mean()),
    "mask_binary_fraction": float(np.mean((masks < 0.1) | (masks > 0.9))),
    "binarized_coverage_mean": float(np.mean(per_image_cov)),
    "binarized_coverage_std": float(np.std(per_image_cov)),
    "empty_mask_fraction": float(np.mean(per_image_cov < 0.01)),
    "centroid_spread_px": centroid_spread(masks >= 0.5),
    "num_generated": int(len(masks)),
  }
  if segmenter is None:
    return out
  fg_ious, mious, mious_inverted, detected = [], [], [], 0
  for i in range(0, len(masks), batch):
    found = segmenter(visualization.to_uint8(composites[i : i + batch]))
    for m_gen, m_ext in zip(masks[i : i + batch], found):
      if m_ext is None or not np.any(m_ext):
        continue
      detected += 1
      ours, theirs = m_gen >= 0.5, np.asarray(m_ext, bool)
      fg_ious.append(segmentation.foreground_iou(ours, theirs))
      mious.append(segmentation.mean_iou_two_class(ours, theirs))
      mious_inverted.append(segmentation.mean_iou_two_class(~ours, theirs))
  out.update(
    detected_fraction=detected / len(masks),
    detected=detected,
    reference_fg_iou=float(np.mean(fg_ious)) if fg_ious else 0.0,
    reference_miou=float(np.mean(mious)) if mious else 0.0,
    # The same with the generator's mask inverted: high when the layers are swapped
    # (the segmenter's object is where the generator's mask is 0).
    reference_miou_inverted_mask=(float(np.mean(mious_inverted)) if mious_inverted else 0.0),
  )
  return out


def centroid_spread(binary_masks: np.ndarray) -> float:
  """RMS distance (px) of the masks' centroids from their mean centroid, over the non-empty
  masks [N, H, W] (0 when fewer than two)."""
  m = np.asarray(binary_masks, np.float64)
  area = m.sum(axis=(1, 2))
  keep = area > 0
  if keep.sum() < 2:
    return 0.0
  m, area = m[keep], area[keep]
  ys, xs = np.arange(m.shape[1]), np.arange(m.shape[2])
  cy = (m.sum(axis=2) @ ys) / area
  cx = (m.sum(axis=1) @ xs) / area
  return float(np.sqrt(np.var(cy) + np.var(cx)))


def evaluate(config, workdir: str, segmenter: Optional[Callable] = None) -> Dict:
  """Scores every trained route of ``workdir`` on the same images; writes
  ``WORKDIR/eval/metrics.json`` (top-level figures: the route ``config.segment.route``; all of
  them under ``routes``; with several evaluation sources, every route's and baseline's figures
  per source under ``sources``), clu scalars and a PNG panel. Returns the metrics."""
  route_name = config.segment.route
  available = inference.trained_routes(workdir)
  if route_name not in available:
    raise ConfigError(
      f"segment.route={route_name!r} has no trained checkpoint in {workdir} (trained: "
      f"{', '.join(available) or 'none'}); train it (--mode=train_segmenter / train_encoder) "
      "or choose another --config.segment.route"
    )
  # The encoder route runs on the GAN's critic too: restored once, with it.
  gan = loading.load_gan(workdir, config, with_critic="encoder" in available)
  data_cfg = data_config.eval_data_config(config)
  max_examples = config.eval.max_examples or None
  split = load_split(data_cfg, gan.resolution, config.eval.batch_size, max_examples)
  batches, gt = split.batches, split.gt
  images = visualization.to_uint8(np.concatenate([x[valid] for x, valid in batches]))
  routes, scores, soft = {}, {}, {}
  for name in available:
    route = inference.load_route(config, workdir, name, gan)
    if route.resolution != gan.resolution:
      raise ConfigError(
        f"the {name} route of {workdir} works at {route.resolution} px but the "
        f"GAN at {gan.resolution} px; retrain it on this GAN"
      )
    soft[name] = predict_route(route, batches)
    scores[name] = score_masks(soft[name], gt)
    routes[name] = dict(scores[name], **route.info)
  result = dict(scores[route_name])
  several = len(split.source_names) > 1
  result.update(
    route=route_name,
    routes=routes,
    num_images=int(len(images)),
    dataset=split.source_names if several else data_cfg.name,
    resolution=gan.resolution,
    gan_step=gan.step,
  )
  masks = baseline_masks(images, config.eval.baselines)
  result["baselines"] = score_baselines(masks, gt)
  if several:  # Every route and baseline per source too (e.g. per object category).
    result["sources"] = per_source_metrics(soft, masks, gt, split.source, split.source_names)
  if segmenter is None and config.eval.external_segmenter:
    segmenter = load_external_segmenter(config.eval.external_segmenter)
  result["generated"] = generated_mask_statistics(
    gan,
    config.eval.num_generated,
    config.seed + seeds.GENERATED_MASK_STATISTICS,
    segmenter=segmenter,
  )
  if config.eval.fid_samples:
    result["fid"] = fid.generator_scores(
      config, gan, config.eval.fid_samples, config.seed + seeds.FID_SAMPLES
    )
  out_dir = files.join(str(files.resolve(workdir)), EVAL_DIR)
  if jax.process_index() == 0:
    files.write_json(files.join(out_dir, "metrics.json"), result)
    # Eight images: the first of each source in turn.
    per = -(-8 // len(split.source_names))
    shown = np.concatenate(
      [np.flatnonzero(split.source == j)[:per] for j in range(len(split.source_names))]
    )[:8]
    preds = [(soft[name][shown] >= 0.5).astype(np.float32)[..., None] for name in available]
    rows = [images[shown], visualization.to_uint8(gt[shown, ..., None], (0.0, 1.0))]
    rows += [visualization.to_uint8(p, (0.0, 1.0)) for p in preds]
    chosen = preds[available.index(route_name)]
    rows.append(
      np.stack([visualization.overlay(images[i], chosen[r, ..., 0]) for r, i in enumerate(shown)])
    )
    visualization.save_png(files.join(out_dir, "panel.png"), visualization.grid(rows))
  writer = loop.metric_writer(out_dir)
  flat = {f"eval/{k}": v for k, v in result.items() if isinstance(v, float)}
  flat.update(
    {
      f"eval/routes/{r}/{k}": v
      for r, m in routes.items()
      for k, v in m.items()
      if isinstance(v, float)
    }
  )
  flat.update(
    {f"eval/baselines/{b}/{k}": v for b, m in result["baselines"].items() for k, v in m.items()}
  )
  for name, m in result.get("sources", {}).items():
    flat.update(
      {
        f"eval/sources/{name}/{kind}/{r}/{k}": v
        for kind in ("routes", "baselines")
        for r, figures in m.get(kind, {}).items()
        for k, v in figures.items()
      }
    )
  flat.update({f"eval/generated/{k}": v for k, v in result["generated"].items()})
  flat.update({f"eval/{k}": result["fid"][k] for k in ("fid", "kid") if "fid" in result})
  writer.write_scalars(gan.step, flat)
  writer.flush()
  logging.info(
    "Evaluation of %s: %s (baselines: %s)",
    workdir,
    {r: round(m["fg_iou"], 4) for r, m in routes.items()},
    {k: round(v["fg_iou"], 4) for k, v in result["baselines"].items()},
  )
  for name, m in result.get("sources", {}).items():
    logging.info(
      "  %s (%d images): %s (baselines: %s)",
      name,
      m["num_images"],
      {r: round(v["fg_iou"], 4) for r, v in m.get("routes", {}).items()},
      {k: round(v["fg_iou"], 4) for k, v in m.get("baselines", {}).items()},
    )
  return result


def read_metrics(workdir: str) -> Dict:
  return json.loads(epath.Path(files.join(workdir, EVAL_DIR, "metrics.json")).read_text())


def fid_of_checkpoint(config, workdir: str, step: Optional[int] = None) -> Dict:
  """``--mode=fid``: FID and KID of the GAN checkpoint ``step`` (default: the latest) on
  ``config.eval.fid_samples`` samples; written to ``eval/fid_step_<step, 7 digits>.json``."""
  gan = loading.load_gan(workdir, config, step=step)
  scores = fid.generator_scores(
    config, gan, config.eval.fid_samples, config.seed + seeds.FID_SAMPLES
  )
  if jax.process_index() == 0:
    out_dir = files.join(str(files.resolve(workdir)), EVAL_DIR)
    files.write_json(files.join(out_dir, f"fid_step_{gan.step:07d}.json"), scores)
  logging.info(
    "GAN step %d: FID %.3f, KID %.5f (%d generated, %d real images, %.0f s)",
    gan.step,
    scores["fid"],
    scores["kid"],
    scores["num_generated"],
    scores["num_real"],
    scores["seconds"],
  )
  return scores
