"""The Python API: a trained run as NumPy arrays and pure JAX functions.

    import layered_gan_jax as lg
    run = lg.load_run("/path/to/workdir")           # local or gs://
    layers = run.sample(8, seed=0)                   # composite, background, foreground, mask
    masks = run.segment(images)                      # one soft mask per image, at its size
    scores = lg.score_masks(masks, ground_truth, images=images)
    gen = run.generator()                            # params + pure apply, for jax.jit / vmap

Conventions: images the user hands in are uint8 (0..255), each [H, W, 3] (RGB), [H, W, 4]
(RGBA, composited over black), [H, W] or [H, W, 1] (grey), converted as ``--mode=segment``
converts image files; images the generator makes are float32 in [-1, 1]; masks are float32 in
[0, 1], foreground where >= 0.5. The sample, segment and fid modes of main.py run the same
functions (:mod:`layered_gan_jax.evaluation.inference`, :mod:`layered_gan_jax.metrics.fid`),
so the API's arrays are the PNGs and JSON files of the command line.
"""

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from layered_gan_jax import files, seeds
from layered_gan_jax.data import image_io
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.evaluation import evaluate, inference
from layered_gan_jax.metrics import fid
from layered_gan_jax.names import BASELINES, ROUTES
from layered_gan_jax.nets import generator as generator_lib
from layered_gan_jax.nets import sampler
from layered_gan_jax.run import layout
from layered_gan_jax.training import loading


@dataclasses.dataclass(frozen=True)
class Generator:
  """The EMA generator as a pure function: ``apply(params, z, noise_key)`` maps latents ``z``
  float32 [B, style_dim] (standard normal) and a PRNG key for the noise maps to the layers
  ``background``, ``foreground`` [B, R, R, 3] in about [-1, 1] and ``mask`` [B, R, R, 1] in
  [0, 1]; ``composite(layers)`` blends them (unshifted)."""

  params: dict
  apply: Callable
  style_dim: int
  resolution: int

  @staticmethod
  def composite(layers) -> jax.Array:
    return sampler.composite(layers)


@dataclasses.dataclass(frozen=True)
class Segmenter:
  """A segmentation route as a pure function: ``apply(params, images)`` maps float32 images
  [B, R, R, 3] in [-1, 1] to soft foreground masks [B, R, R] in [0, 1]."""

  route: str
  params: dict
  apply: Callable
  resolution: int


def _no_run(workdir: str) -> ConfigError:
  return ConfigError(
    f"no trained run in {workdir}: it has no checkpoint of the GAN, the encoder or the "
    "distilled segmenter; train one with python main.py --mode=train --workdir=... first"
  )


def load_run(workdir: str, config: Optional[ml_collections.ConfigDict] = None) -> "Run":
  """The run trained in ``workdir`` (a local folder or ``gs://...``). ``config``: the run's own
  (read from its latest GAN checkpoint) unless given; give one to change what is not part of the
  model (``segment.route``, ``segment.mirror_average``, ``eval.*``). Nothing is restored until
  it is used. Raises ConfigError if ``workdir`` holds no trained network."""
  workdir = str(files.resolve(workdir))
  if config is None:
    config = _saved_config(workdir)
  return Run(workdir, config)


def _saved_config(workdir: str) -> ml_collections.ConfigDict:
  for sub in (layout.GAN_DIR, layout.SEGMENTER_DIR, layout.ENCODER_DIR):
    directory = files.join(workdir, sub)
    steps = layout.complete_steps(directory)
    if steps:
      return ml_collections.ConfigDict(layout.read_saved(directory, steps[-1], "config"))
  raise _no_run(workdir)


class Run:
  """A trained run (see :func:`load_run`). ``config`` is its config; the GAN, the encoder and
  the distilled segmenter are restored when first used, once."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    self.workdir, self.config = workdir, config
    self._gan, self._routes = None, {}

  @property
  def gan(self) -> loading.LoadedGAN:
    """The restored GAN (EMA generator and critic, stage, alpha, step)."""
    if self._gan is None:
      self._gan = loading.load_gan(self.workdir, self.config, with_critic=True)
    return self._gan

  @property
  def step(self) -> int:
    """The GAN's training step (the iteration of its latest intact checkpoint)."""
    return int(self.gan.step)

  @property
  def resolution(self) -> int:
    """The side R of the generator's images (and of the segmenters' inputs)."""
    return int(self.gan.resolution)

  def route(self, name: Optional[str] = None) -> inference.Route:
    """A segmentation route (default: ``config.segment.route``), restored once."""
    name = name or self.config.segment.route
    if name not in ROUTES:
      raise ValueError(f"route={name!r}; choose one of {', '.join(ROUTES)}")
    if name not in self._routes:
      gan = None if name == "distilled" else self.gan
      self._routes[name] = inference.load_route(self.config, self.workdir, name, gan)
    return self._routes[name]

  def sample(
    self, num: int = 16, seed: int = 0, truncation: Optional[float] = None, batch: int = 16
  ) -> Dict[str, np.ndarray]:
    """``num`` layered samples, as ``--mode=sample --num_samples=num --seed=seed`` draws them:
    ``composite``, ``background``, ``foreground`` float32 [num, R, R, 3] in about [-1, 1]
    (``visualization.to_uint8`` gives the PNGs' pixels) and ``mask`` float32 [num, R, R] in
    [0, 1]."""
    if not isinstance(num, int) or num <= 0:
      raise ValueError(f"num={num!r} must be a positive integer")
    parts = list(inference.iter_sample_layers(self.gan, num, seed, truncation, batch))
    layers = {k: np.concatenate([p[k] for p in parts]) for k in ("background", "foreground")}
    mask = np.concatenate([p["mask"] for p in parts])
    composite = (1 - mask) * layers["background"] + mask * layers["foreground"]
    return dict(composite=composite, **layers, mask=mask[..., 0])

  def segment(self, images, route: Optional[str] = None, batch: int = 16) -> List[np.ndarray]:
    """Soft foreground masks float32 [H, W] in [0, 1], one per image at the image's own size
    (foreground where >= 0.5, as ``--mode=segment`` writes them). ``images``: a sequence of
    uint8 images of any sizes (see the module docstring), or one uint8 array [N, H, W, C]."""
    return inference.masks_of_images(self.route(route), to_rgb_batch(images), batch)

  def fid(
    self, num_samples: Optional[int] = None, real_images: Optional[int] = None
  ) -> Dict[str, float]:
    """FID and KID of the EMA generator, as ``--mode=fid`` computes them: ``num_samples``
    composites (default ``eval.fid_samples``) against ``real_images`` real training images
    (default ``eval.fid_real_images``). Returns the mode's JSON as a dict (``fid``, ``kid``,
    ``num_generated``, ``num_real``, ...). Needs the Inception weights (``eval.fid_weights``,
    or fetched once: ``python -m layered_gan_jax.nets.inception_weights``)."""
    config = self.config.copy_and_resolve_references()
    with config.unlocked():
      if num_samples is not None:
        config.eval.fid_samples = num_samples
      if real_images is not None:
        config.eval.fid_real_images = real_images
    if config.eval.fid_samples < 2 or config.eval.fid_real_images < 2:
      raise ValueError("FID needs num_samples >= 2 and real_images >= 2")
    return fid.generator_scores(
      config, self.gan, config.eval.fid_samples, config.seed + seeds.FID_SAMPLES
    )

  def generator(self, truncation: Optional[float] = None) -> Generator:
    """The EMA generator's parameters and pure ``apply`` (see :class:`Generator`); with
    ``truncation``, styles pulled towards the mean styles as ``sample(truncation=...)`` does."""
    gan = self.gan
    w_avg = None
    if truncation is not None:
      key = jax.random.PRNGKey(seeds.TRUNCATION_MEAN_STYLES)
      w_avg = generator_lib.mean_styles(gan.generator, gan.ema_params, key)

    def apply(params, z, noise_key):
      return sampler.layers(
        gan.generator,
        params,
        z,
        noise_key,
        stage=gan.stage,
        alpha=gan.alpha,
        truncation=truncation,
        w_avg=w_avg,
      )

    return Generator(gan.ema_params, apply, gan.generator.style_dim, gan.resolution)

  def segmenter(self, route: Optional[str] = None) -> Segmenter:
    """A route's parameters and pure ``apply`` (see :class:`Segmenter`)."""
    r = self.route(route)
    return Segmenter(r.name, r.params, r.apply, r.resolution)


def to_rgb_batch(images) -> List[np.ndarray]:
  """uint8 RGB images [H, W, 3] of user images (see the module docstring), converted as image
  files are; a clear ValueError for anything that is not a non-empty batch of uint8 images."""
  if isinstance(images, np.ndarray):
    if images.ndim not in (3, 4):
      raise ValueError(
        f"images: expected a batch [N, H, W] or [N, H, W, C] or a list of images, got an "
        f"array of shape {images.shape}; for one image pass images[None]"
      )
    images = list(images)
  if not isinstance(images, (list, tuple)) or not images:
    raise ValueError("images: expected a non-empty list (or batch) of uint8 images")
  out = []
  for i, image in enumerate(images):
    x = np.asarray(image)
    if x.dtype != np.uint8:
      raise ValueError(
        f"images[{i}]: expected uint8 pixels (0..255), got {x.dtype}; convert floats in [-1, 1] "
        "with visualization.to_uint8"
      )
    if x.ndim == 3 and x.shape[-1] == 1:
      x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] not in (2, 3, 4)) or 0 in x.shape:
      raise ValueError(
        f"images[{i}]: expected [H, W] (grey), [H, W, 2] (grey + alpha), [H, W, 3] (RGB) or "
        f"[H, W, 4] (RGBA), got shape {x.shape}"
      )
    out.append(image_io.pil_to_rgb(Image.fromarray(x), f"images[{i}]"))
  return out


def score_masks(
  masks,
  ground_truth,
  images=None,
  baselines: Sequence[str] = ("full_image", "center_prior", "grabcut"),
) -> Dict:
  """The evaluate mode's figures for masks the user holds: ``masks`` (soft, [0, 1]) and
  ``ground_truth`` ([0, 1], foreground where >= 0.5), each [N, H, W] or a list of N [H, W]
  arrays of matching sizes. Returns ``{"masks": metrics}`` (foreground IoU, mIoU, accuracy,
  F-beta, ... as in eval/metrics.json); with uint8 ``images`` (as :meth:`Run.segment` takes
  them) also ``{"baselines": {name: metrics}}`` of each of ``baselines`` (one of
  :data:`layered_gan_jax.names.BASELINES`) on them. Images of different sizes are scored
  each alone and averaged over images as evaluate does."""
  masks, gt = _as_list(masks, "masks"), _as_list(ground_truth, "ground_truth")
  if len(masks) != len(gt):
    raise ValueError(f"{len(masks)} masks but {len(gt)} ground-truth masks")
  for i, (m, g) in enumerate(zip(masks, gt)):
    if m.shape != g.shape:
      raise ValueError(f"masks[{i}] is {m.shape} but ground_truth[{i}] is {g.shape}")
  unknown = [b for b in baselines if b not in BASELINES]
  if unknown:
    raise ValueError(f"unknown baseline(s) {unknown}; choose among {', '.join(BASELINES)}")
  rgb = None
  if images is not None:
    rgb = to_rgb_batch(images)
    if [x.shape[:2] for x in rgb] != [m.shape for m in masks]:
      raise ValueError("images and masks differ in number or size")
  groups = {}
  for i, m in enumerate(masks):
    groups.setdefault(m.shape, []).append(i)
  per_image = {"masks": []}
  for shape, idx in groups.items():
    g = np.stack([gt[i] for i in idx])
    per_image["masks"].append(
      (len(idx), evaluate.score_masks(np.stack([masks[i] for i in idx]), g))
    )
    if rgb is not None:
      found = evaluate.baseline_masks(np.stack([rgb[i] for i in idx]), baselines)
      for name, scores in evaluate.score_baselines(found, g).items():
        per_image.setdefault(name, []).append((len(idx), scores))
  out = {"masks": _weighted(per_image.pop("masks"))}
  if rgb is not None:
    out["baselines"] = {name: _weighted(parts) for name, parts in per_image.items()}
  return out


def _as_list(x, what: str) -> List[np.ndarray]:
  if isinstance(x, np.ndarray) and x.ndim == 3:
    x = list(x)
  if not isinstance(x, (list, tuple)) or not len(x):
    raise ValueError(f"{what}: expected [N, H, W] or a non-empty list of [H, W] arrays")
  out = [np.asarray(m, np.float32) for m in x]
  if any(m.ndim != 2 for m in out):
    raise ValueError(f"{what}: every mask must be [H, W]")
  return out


def _weighted(parts) -> Dict[str, float]:
  """Metrics of groups of images averaged with the groups' sizes as weights (the metrics are
  means over images)."""
  total = sum(n for n, _ in parts)
  return {k: sum(n * s[k] for n, s in parts) / total for k in parts[0][1]}
