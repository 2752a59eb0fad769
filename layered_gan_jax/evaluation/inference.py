"""Inference from Orbax checkpoints: layered samples, and segmentation of image files.

``sample`` restores only the EMA generator (and the config). Segmentation goes through one of
two routes (``config.segment.route``, see :func:`load_route`): ``distilled`` restores only the
distilled segmenter, ``encoder`` the EMA generator and the encoder. Nothing writes into its
inputs.
"""

import os
from typing import Iterator, List, Optional, Sequence

import jax
import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from layered_gan_jax import files, parallel, seeds, visualization
from layered_gan_jax.data import image_io, transforms
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.names import ROUTES
from layered_gan_jax.nets import generator as generator_lib
from layered_gan_jax.nets import sampler
from layered_gan_jax.run import checkpoints, layout
from layered_gan_jax.training import loading

LAYERS = ("composite", "background", "foreground", "mask")


def _check_output(output: Optional[str], mode: str) -> str:
  if not output:
    raise ConfigError(f"--mode={mode} needs --output=DIR (a folder for the PNG files)")
  return str(files.resolve(output))


def iter_sample_layers(
  gan: loading.LoadedGAN,
  num_samples: int,
  seed: int = 0,
  truncation: Optional[float] = None,
  batch: int = 16,
) -> Iterator[dict]:
  """The layers of ``num_samples`` samples of the EMA generator, ``batch`` at a time (the last
  batch shorter): dicts of host arrays ``background`` and ``foreground`` float32 [n, R, R, 3]
  in about [-1, 1] and ``mask`` float32 [n, R, R, 1] in [0, 1]. Each batch draws its latents
  and noise from ``seed``'s key sequence; with ``truncation``, styles are pulled towards the
  mean styles (StyleGAN's truncation trick)."""
  w_avg = None
  if truncation is not None:
    w_avg = generator_lib.mean_styles(
      gan.generator, gan.ema_params, jax.random.PRNGKey(seed + seeds.TRUNCATION_MEAN_STYLES)
    )

  @jax.jit
  def generate(params, z, key):
    return sampler.layers(
      gan.generator,
      params,
      z,
      key,
      stage=gan.stage,
      alpha=gan.alpha,
      truncation=truncation,
      w_avg=w_avg,
    )

  key = jax.random.PRNGKey(seed)
  for start in range(0, num_samples, batch):
    key, k_z, k_noise = jax.random.split(key, 3)
    z = sampler.latents(k_z, batch, gan.generator.style_dim)
    layers = jax.device_get(generate(gan.ema_params, z, k_noise))
    n = min(batch, num_samples - start)
    yield {k: np.asarray(v)[:n] for k, v in layers.items()}


def sample(
  config,
  workdir: str,
  output: str,
  num_samples: int = 16,
  truncation: Optional[float] = None,
  seed: int = 0,
  batch: int = 16,
) -> List[str]:
  """``--mode=sample``: PNGs of composite, background, foreground and mask per sample (the
  layers of :func:`iter_sample_layers`), and a grid."""
  output = _check_output(output, "sample")
  if num_samples <= 0:
    raise ConfigError(f"--num_samples={num_samples} must be > 0")
  gan = loading.load_gan(workdir, config)
  written, grid_rows, start = [], None, 0
  for layers in iter_sample_layers(gan, num_samples, seed, truncation, batch):
    rows = visualization.layer_rows(layers)[:4]
    n = len(rows[0])
    for name, images in zip(LAYERS, rows):
      for i in range(n):
        path = files.join(output, name, f"{start + i:05d}.png")
        visualization.save_png(path, images[i])
        written.append(path)
    if grid_rows is None:
      grid_rows = [r[: min(n, 16)] for r in rows]
    start += n
  visualization.save_png(files.join(output, "grid.png"), visualization.grid(grid_rows))
  logging.info("Wrote %d samples (x %d layers) to %s", num_samples, len(LAYERS), output)
  return written


class Route:
  """A trained segmentation route. ``apply(params, images)`` is a pure function (usable inside
  ``jax.jit`` / ``jax.vmap``) from float images [B, R, R, 3] in [-1, 1] to soft foreground
  masks [B, R, R] in [0, 1]; ``params`` its parameters. ``predict(images)`` runs it on host
  arrays (B a multiple of the device count)."""

  def __init__(self, name: str, resolution: int, apply, params, info: dict, jit: bool = True):
    self.name, self.resolution, self.info = name, resolution, info
    self.apply, self.params = apply, params
    self._predict = jax.jit(apply) if jit else apply

  def predict(self, images: np.ndarray) -> np.ndarray:
    return np.asarray(jax.device_get(self._predict(self.params, parallel.put_batch(images))))


def route_directory(workdir: str, route: str) -> str:
  sub = layout.SEGMENTER_DIR if route == "distilled" else layout.ENCODER_DIR
  return files.join(str(files.resolve(workdir)), sub)


def trained_routes(workdir: str) -> List[str]:
  """The routes of ``workdir`` with a complete checkpoint, in ``ROUTES`` order."""
  found = []
  for r in ROUTES:
    directory = route_directory(workdir, r)
    if epath.Path(directory).is_dir():
      ckpt = checkpoints.Checkpointer(directory, ())
      if ckpt.latest_step() is not None:
        found.append(r)
      ckpt.close()
  return found


def load_route(config, workdir: str, route: str, gan: Optional[loading.LoadedGAN] = None) -> Route:
  """Restores what ``route`` needs, and nothing else: the distilled segmenter alone, or the
  encoder on ``gan`` (a GAN restored with its critic; restored here when not given). A missing
  checkpoint is a ConfigError."""
  if route not in ROUTES:
    raise ConfigError(f"segment.route={route!r}; choose one of {', '.join(ROUTES)}")
  if not epath.Path(route_directory(workdir, route)).is_dir():
    fix = "--mode=train_segmenter" if route == "distilled" else "--mode=train_encoder"
    raise ConfigError(
      f"segment.route={route!r} but {route_directory(workdir, route)} holds no "
      f"checkpoint; train it with {fix} or choose another "
      f"--config.segment.route"
    )
  if route == "distilled":
    model, params, meta = loading.load_segmenter(workdir)
    mirror = bool(config.segment.mirror_average)

    def apply(params, x):
      logits = model.apply({"params": params}, x)
      if mirror:  # The U-Net was trained on mirrored pairs too: average both views.
        logits = 0.5 * (logits + model.apply({"params": params}, x[:, :, ::-1])[:, :, ::-1])
      return jax.nn.sigmoid(logits)

    return Route(
      route,
      int(meta["resolution"]),
      apply,
      parallel.put_replicated(params),
      {
        "gan_step": meta.get("gan_step"),
        "segmenter_step": meta.get("best_step"),
        "validation_fg_iou": meta.get("best_validation_fg_iou"),
        "mirror_average": mirror,
      },
    )
  if gan is None:
    gan = loading.load_gan(workdir, config, with_critic=True)
  setup, enc_params = loading.load_encoder(config, workdir, gan)
  predict = setup.predict_fn()  # Compiled: the encoder, its refinement, the frozen generator.
  return Route(
    route,
    setup.gan.resolution,
    lambda p, x: predict(p["encoder"], p["frozen"], x)[0]["mask"][..., 0],
    {"encoder": enc_params, "frozen": setup.frozen},
    {"gan_step": setup.gan.step},
    jit=False,
  )


def masks_of_images(route: Route, images: Sequence[np.ndarray], batch: int = 16) -> List:
  """Soft foreground masks float32 [H, W] in [0, 1] of uint8 RGB images [H, W, 3] of any
  sizes, one per image at its own size: each image resized to the route's R x R, ``batch`` at
  a time (rounded to the device count), and its R x R mask resized back (bilinear). A pixel is
  foreground where its mask is >= 0.5 (the masks ``--mode=segment`` writes)."""
  r = route.resolution
  n_dev = jax.device_count()
  batch = max(n_dev, (batch // n_dev) * n_dev)
  out = []
  for start in range(0, len(images), batch):
    chunk = images[start : start + batch]
    x = np.stack([transforms.to_float(transforms.resize_square(im, r)) for im in chunk])
    pad = batch - len(x)
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    for image, soft in zip(chunk, route.predict(x)[: len(chunk)]):
      h, w = image.shape[:2]
      resized = Image.fromarray(soft.astype(np.float32), mode="F").resize(
        (w, h), Image.Resampling.BILINEAR
      )
      out.append(np.asarray(resized))
  return out


def _output_stem(path: str, root: str, used: set) -> str:
  rel = os.path.relpath(path, root) if root else os.path.basename(path)
  stem = os.path.splitext(rel)[0]
  if stem in used:
    stem = rel.replace(".", "_")
  used.add(stem)
  return stem


def segment(config, workdir: str, input_path: str, output: str, batch: int = 16) -> dict:
  """Segments an image file or a folder (recursively) through ``config.segment.route``: per
  image a mask PNG at the original size (0 / 255) and an overlay. Unreadable files are reported
  and skipped; the rest is done. Returns a report (also written to
  OUTPUT/segment_report.json)."""
  output = _check_output(output, "segment")
  if not input_path:
    raise ConfigError("--mode=segment needs --input=FILE_OR_DIR")
  input_path = os.path.abspath(input_path)
  if not os.path.exists(input_path):
    raise ConfigError(f"--input={input_path} does not exist")
  root = input_path if os.path.isdir(input_path) else ""
  in_dir = input_path if root else os.path.dirname(input_path)
  if root and (
    epath.Path(output) == epath.Path(in_dir) or epath.Path(in_dir) in epath.Path(output).parents
  ):
    raise ConfigError(
      f"--output={output} is inside the input folder {in_dir}; choose a folder "
      "outside it (segment never writes into its inputs)"
    )
  inputs = image_io.list_images(input_path) if root else [input_path]
  route = load_route(config, workdir, config.segment.route)
  failed, done, used = [], [], set()
  for start in range(0, len(inputs), batch):
    loaded = []
    for path in inputs[start : start + batch]:
      try:
        loaded.append((path, image_io.load_image(path)))
      except (image_io.DataError, OSError, ValueError) as e:
        logging.warning("Skipping %s: %s", path, e)
        failed.append({"file": path, "error": str(e)})
    soft = masks_of_images(route, [image for _, image in loaded], batch)
    for (path, image), mask in zip(loaded, soft):
      full = mask >= 0.5
      stem = _output_stem(path, root, used)
      visualization.save_png(files.join(output, stem + "_mask.png"), (full * 255).astype(np.uint8))
      visualization.save_png(
        files.join(output, stem + "_overlay.png"), visualization.overlay(image, full)
      )
      done.append(path)
  report = {
    "segmented": len(done),
    "failed": failed,
    "output": output,
    "resolution": route.resolution,
    "route": route.name,
    **route.info,
  }
  files.write_json(files.join(output, "segment_report.json"), report)
  logging.info(
    "Segmented %d images into %s through the %s route; %d unreadable file(s) skipped",
    len(done),
    output,
    route.name,
    len(failed),
  )
  return report
