# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # layered_gan_jax in a notebook
#
# Trains a tiny layered GAN on the embedded synthetic dataset for a few seconds (or loads a run
# you trained: set `WORKDIR`), then looks at its layers, segments a handful of images and plots
# the training curves. Any runtime works: a CPU runs the tiny settings here in under a minute; a
# GPU or TPU runtime (Colab: Runtime > Change runtime type) is what real training needs.
# The file is stored as a jupytext script (`notebooks/quickstart.py`); open it with jupytext, or
# convert it: `jupytext --to ipynb notebooks/quickstart.py`.

# %%
# Makes the package and the repository's configs/ importable. Opened from a clone's notebooks/
# folder, it uses that clone; elsewhere (a fresh Colab or GPU host) set LAYERED_GAN_JAX_REPO to
# the repository's git URL: it is cloned and installed with pip. Nothing is installed where the
# package is already importable.
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.abspath("..")
if not os.path.isdir(os.path.join(ROOT, "configs")):
  url = os.environ.get("LAYERED_GAN_JAX_REPO")
  if not url:
    raise SystemExit("open this notebook from a clone's notebooks/, or set LAYERED_GAN_JAX_REPO")
  ROOT = os.path.abspath("layered_gan_jax_repo")
  if not os.path.isdir(ROOT):
    subprocess.check_call(["git", "clone", "--depth=1", url, ROOT])
if importlib.util.find_spec("layered_gan_jax") is None:
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[notebook]"])
  importlib.invalidate_caches()
sys.path.insert(0, ROOT)

# %%
import glob
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from PIL import Image

import layered_gan_jax as lg
from configs import tiny
from layered_gan_jax import visualization
from layered_gan_jax.checks import validate
from layered_gan_jax.data import synthetic
from layered_gan_jax.training import train_gan, train_segmenter

print("JAX", jax.__version__, "on", jax.devices())

# %% [markdown]
# ## Train (or load) a run
# `configs/tiny.py`: 8 -> 16 px, minute widths, 8 GAN iterations and 4 of the distilled
# segmenter. Its numbers mean nothing; `configs/synthetic.py` is the real quick start
# (README), `configs/car.py` the paper's recipe.

# %%
WORKDIR = os.environ.get("WORKDIR", "")  # A trained run's workdir, or '' to train here.
if not WORKDIR:
  WORKDIR = tempfile.mkdtemp(prefix="layered_gan_")
  config = tiny.get_config()
  config.train.max_steps = 8
  validate.validate_config(config, "train")
  train_gan.train_and_evaluate(config, WORKDIR)
  train_segmenter.train_and_evaluate(config, WORKDIR)

run = lg.load_run(WORKDIR)
print(f"GAN step {run.step}, {run.resolution} px, segmentation route {run.config.segment.route}")

# %% [markdown]
# ## The layers
# Each sample is a background, a foreground and a mask; the composite blends them. During
# training the critic sees the composite with the foreground and mask shifted together (the
# perturbation that makes the mask an object's).

# %%
layers = run.sample(6, seed=0)
gen = run.generator()
shift = 3  # Pixels: the perturbation, by hand on the same layers.
moved_fg = np.roll(layers["foreground"], shift, axis=2)
moved_mask = np.roll(layers["mask"], shift, axis=2)[..., None]
shifted = (1 - moved_mask) * layers["background"] + moved_mask * moved_fg
rows = {
  "composite": visualization.to_uint8(layers["composite"]),
  "background": visualization.to_uint8(layers["background"]),
  "foreground": visualization.to_uint8(layers["foreground"]),
  "mask": visualization.to_uint8(layers["mask"], (0.0, 1.0)),
  "shifted composite": visualization.to_uint8(shifted),
}
fig, axes = plt.subplots(len(rows), 6, figsize=(9, 8))
for r, (name, images) in enumerate(rows.items()):
  for c in range(6):
    axes[r, c].imshow(images[c], cmap="gray", vmin=0, vmax=255)
    axes[r, c].axis("off")
  axes[r, 0].set_title(name, loc="left", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Segment images
# `run.segment` takes uint8 images of any size (RGB, grey or RGBA) and returns one soft mask
# per image at its own size; foreground is where it is >= 0.5. Here: test images of the
# synthetic dataset, with their ground truth, scored as `--mode=evaluate` scores.

# %%
images, truth = [], []
for i in range(6):
  image, mask = synthetic.render_example("test", i, 64)
  images.append(np.asarray(image))
  truth.append(np.asarray(mask, np.float32))
masks = run.segment(images)
print(lg.score_masks(masks, truth, images=images, baselines=("center_prior",)))
fig, axes = plt.subplots(2, 6, figsize=(9, 3))
for c in range(6):
  axes[0, c].imshow(images[c])
  axes[1, c].imshow(visualization.overlay(images[c], masks[c] >= 0.5))
  for a in axes[:, c]:
    a.axis("off")
plt.show()

# %% [markdown]
# ## Training curves
# The trainers write clu scalars to TensorBoard event files (`tensorboard --logdir WORKDIR`
# shows them too).


# %%
def scalars(folder):
  """{tag: (steps, values)} of the scalars in a folder's event files."""
  out = {}
  for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars":
          steps, values = out.setdefault(value.tag, ([], []))
          steps.append(event.step)
          values.append(float(tf.make_ndarray(value.tensor)))
  return out


gan_curves = scalars(WORKDIR)
fig, axes = plt.subplots(1, 3, figsize=(10, 2.5))
for a, tag in zip(axes, ("wasserstein", "generator_loss", "mask_coverage")):
  a.plot(*gan_curves[tag], marker="o")
  a.set_title(tag)
  a.set_xlabel("iteration")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## In your own JAX code
# The generator and the segmenter as pure functions of their parameters:

# %%
z = jax.random.normal(jax.random.PRNGKey(1), (4, gen.style_dim))
drawn = jax.jit(gen.apply)(gen.params, z, jax.random.PRNGKey(2))
seg = run.segmenter()
soft = jax.jit(seg.apply)(seg.params, gen.composite(drawn))
difference = float(abs(soft - drawn["mask"][..., 0]).mean())
print(f"segmenter vs the generator's own masks: mean |difference| {difference:.3f}")
Image.fromarray(visualization.grid([visualization.to_uint8(gen.composite(drawn))]))
