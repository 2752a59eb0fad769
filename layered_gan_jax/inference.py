"""Inference from Orbax checkpoints: layered samples, and segmentation of image files.

``sample`` restores only the EMA generator (and the config); ``segment`` restores the EMA
generator, the critic-free encoder path and the encoder. Neither writes into its inputs.
"""

import json
import os
from typing import List, Optional

import jax
import numpy as np
from absl import logging
from PIL import Image

from layered_gan_jax import generator as generator_lib, image_io, input_pipeline
from layered_gan_jax import parallel, visualization
from layered_gan_jax.config_validation import ConfigError
from layered_gan_jax.train_gan import load_gan

LAYERS = ("composite", "background", "foreground", "mask")


def _check_output(output: Optional[str], mode: str) -> str:
  if not output:
    raise ConfigError(f"--mode={mode} needs --output=DIR (a folder for the PNG files)")
  return os.path.abspath(output)


def sample(config, workdir: str, output: str, num_samples: int = 16,
           truncation: Optional[float] = None, seed: int = 0, batch: int = 16) -> List[str]:
  """Writes PNGs of composite, background, foreground and mask per sample, and a grid."""
  output = _check_output(output, "sample")
  if num_samples <= 0:
    raise ConfigError(f"--num_samples={num_samples} must be > 0")
  gan = load_gan(workdir, config)
  w_avg = None
  if truncation is not None:
    w_avg = generator_lib.mean_styles(gan.generator, gan.ema_params, jax.random.PRNGKey(seed + 1))

  @jax.jit
  def generate(params, z, key):
    return gan.generator.apply({"params": params}, z, stage=gan.stage, alpha=gan.alpha,
                               truncation=truncation, w_avg=w_avg, rngs={"noise": key})

  key = jax.random.PRNGKey(seed)
  written, grid_rows = [], None
  for start in range(0, num_samples, batch):
    key, k_z, k_noise = jax.random.split(key, 3)
    z = jax.random.normal(k_z, (batch, gan.generator.style_dim))
    layers = jax.device_get(generate(gan.ema_params, z, k_noise))
    rows = visualization.layer_rows(layers)[:4]
    n = min(batch, num_samples - start)
    for name, images in zip(LAYERS, rows):
      for i in range(n):
        path = os.path.join(output, name, f"{start + i:05d}.png")
        visualization.save_png(path, images[i])
        written.append(path)
    if grid_rows is None:
      grid_rows = [r[:min(n, 16)] for r in rows]
  visualization.save_png(os.path.join(output, "grid.png"), visualization.grid(grid_rows))
  logging.info("Wrote %d samples (x %d layers) to %s", num_samples, len(LAYERS), output)
  return written


def _output_stem(path: str, root: str, used: set) -> str:
  rel = os.path.relpath(path, root) if root else os.path.basename(path)
  stem = os.path.splitext(rel)[0]
  if stem in used:
    stem = rel.replace(".", "_")
  used.add(stem)
  return stem


def segment(config, workdir: str, input_path: str, output: str, batch: int = 16) -> dict:
  """Segments an image file or a folder (recursively): per image a mask PNG at the original
  size (0 / 255) and an overlay. Unreadable files are reported and skipped; the rest is done.
  Returns a report (also written to OUTPUT/segment_report.json)."""
  from layered_gan_jax.train_encoder import load_encoder  # pylint: disable=g-import-not-at-top
  output = _check_output(output, "segment")
  if not input_path:
    raise ConfigError("--mode=segment needs --input=FILE_OR_DIR")
  input_path = os.path.abspath(input_path)
  if not os.path.exists(input_path):
    raise ConfigError(f"--input={input_path} does not exist")
  root = input_path if os.path.isdir(input_path) else ""
  in_dir = input_path if root else os.path.dirname(input_path)
  if os.path.commonpath([output, in_dir]) == in_dir and root:
    raise ConfigError(f"--output={output} is inside the input folder {in_dir}; choose a folder "
                      "outside it (segment never writes into its inputs)")
  files = image_io.list_images(input_path) if root else [input_path]
  setup, enc_params = load_encoder(config, workdir)
  predict = setup.predict_fn()
  r = setup.gan.resolution
  n_dev = jax.device_count()
  batch = max(n_dev, (batch // n_dev) * n_dev)
  failed, done, used = [], [], set()
  for start in range(0, len(files), batch):
    loaded = []
    for path in files[start:start + batch]:
      try:
        loaded.append((path, image_io.load_image(path)))
      except (image_io.DataError, OSError, ValueError) as e:
        logging.warning("Skipping %s: %s", path, e)
        failed.append({"file": path, "error": str(e)})
    if not loaded:
      continue
    x = np.stack([input_pipeline.to_float(input_pipeline.resize_square(im, r))
                  for _, im in loaded])
    pad = batch - len(x)
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
    layers, _ = predict(enc_params, setup.frozen, parallel.put_batch(x))
    masks = np.asarray(jax.device_get(layers["mask"]))[:len(loaded), ..., 0]
    for (path, image), soft in zip(loaded, masks):
      h, w = image.shape[:2]
      full = np.asarray(Image.fromarray(soft.astype(np.float32), mode="F").resize(
          (w, h), Image.Resampling.BILINEAR)) >= 0.5
      stem = _output_stem(path, root, used)
      visualization.save_png(os.path.join(output, stem + "_mask.png"),
                             (full * 255).astype(np.uint8))
      visualization.save_png(os.path.join(output, stem + "_overlay.png"),
                             visualization.overlay(image, full))
      done.append(path)
  report = {"segmented": len(done), "failed": failed, "output": output,
            "resolution": r, "gan_step": setup.gan.step}
  os.makedirs(output, exist_ok=True)
  with open(os.path.join(output, "segment_report.json"), "w") as f:
    json.dump(report, f, indent=2)
  logging.info("Segmented %d images into %s; %d unreadable file(s) skipped", len(done), output,
               len(failed))
  return report

