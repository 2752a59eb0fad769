"""FID and KID: Inception pool3 features, their statistics, and the two distances.

* ``FeatureExtractor(params)(images_uint8)``: features [N, 2048], one compiled function for a
  fixed batch (the last one padded), batch-sharded over every device, parameters replicated.
* ``fid_from_features`` / ``fid_from_statistics``: the Frechet distance of the two Gaussian fits
  (mean, covariance with ddof=1), in float64 on the host; the trace of the matrix square root
  from the eigenvalues of ``S1^1/2 S2 S1^1/2`` (symmetric, so exact for covariances and stable
  when they are singular, i.e. fewer samples than 2,048).
* ``kid``: the unbiased MMD^2 with the cubic polynomial kernel ``(x.y / d + 1)^3``, averaged over
  ``num_subsets`` random subsets of ``min(n_real, n_fake, max_subset_size)`` features of each
  side, as StyleGAN2-ADA computes it; the subsets come from a seeded generator.
* ``real_statistics``: the features of a dataset's real training images (the training stream's
  crops, seed 0), cached per dataset, resolution, crop and image count (``cache_key``).
"""

import hashlib
import io
import json
import os
import time
from typing import Dict, Optional

import jax
import numpy as np

from layered_gan_jax import parallel, seeds, visualization
from layered_gan_jax.nets import inception, sampler

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_FEATURES_KEPT = 10_000  # Real features kept in the cache for KID (a seeded subset).


class FeatureExtractor:
  """``extractor(images_uint8 [N, H, W, 3]) -> float32 [N, 2048]``: the network compiled once
  (at 299 px), the resize once per input size."""

  def __init__(self, params, batch_size: int = 50):
    self.batch_size = max(jax.device_count(), batch_size // jax.device_count() * jax.device_count())
    self.params = parallel.put_replicated(params)
    data, repl = parallel.batch_sharded(), parallel.replicated()
    prep = jax.jit(inception.preprocess, in_shardings=data, out_shardings=data)
    net = jax.jit(
      lambda p, x: inception.InceptionV3().apply({"params": p}, x),
      in_shardings=(repl, data),
      out_shardings=repl,
    )
    self._fn = lambda params, images: net(params, prep(images))

  def __call__(self, images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
    out, b = [], self.batch_size
    for i in range(0, len(images), b):
      chunk = images[i : i + b]
      n = len(chunk)
      if n < b:
        chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], np.uint8)])
      out.append(np.asarray(jax.device_get(self._fn(self.params, chunk)))[:n])
    if not out:
      return np.zeros((0, inception.FEATURES), np.float32)
    return np.concatenate(out).astype(np.float32)


def statistics(features) -> Dict[str, np.ndarray]:
  f = np.asarray(features, np.float64)
  return {"mu": f.mean(axis=0), "sigma": np.cov(f, rowvar=False)}


def fid_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  w, v = np.linalg.eigh(sigma1)
  root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
  inner = root1 @ sigma2 @ root1
  # tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2): two symmetric eigensolves.
  trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
  return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)


def fid_against_features(mu1, sigma1, features) -> float:
  """``fid_from_statistics(mu1, sigma1, *statistics(features))``; with fewer features than
  dimensions, from the eigenvalues of ``B S1 B^T / (n - 1)`` (n x n, B the centred features),
  which are the nonzero ones of ``S1 S2``."""
  f = np.asarray(features, np.float64)
  n, d = f.shape
  if n > d:
    s = statistics(f)
    return fid_from_statistics(mu1, sigma1, s["mu"], s["sigma"])
  mu1, sigma1 = np.asarray(mu1, np.float64), np.asarray(sigma1, np.float64)
  mu2 = f.mean(axis=0)
  b = f - mu2
  inner = b @ sigma1 @ b.T / (n - 1)
  trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
  return float(
    np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.square(b).sum() / (n - 1) - 2.0 * trace_root
  )


def fid_from_features(features_a, features_b) -> float:
  a = statistics(features_a)
  return fid_against_features(a["mu"], a["sigma"], features_b)


def kid(
  features_real,
  features_fake,
  num_subsets: int = KID_SUBSETS,
  max_subset_size: int = KID_SUBSET_SIZE,
  seed: int = 0,
) -> float:
  real = np.asarray(features_real, np.float64)
  fake = np.asarray(features_fake, np.float64)
  d = real.shape[1]
  m = min(len(real), len(fake), max_subset_size)
  if m < 2:
    raise ValueError(f"KID needs at least 2 features per side, got {len(real)} and {len(fake)}")
  rng = np.random.default_rng(seed)
  total = 0.0
  for _ in range(num_subsets):
    x = fake[rng.choice(len(fake), m, replace=False)]
    y = real[rng.choice(len(real), m, replace=False)]
    a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
    b = (x @ y.T / d + 1) ** 3
    total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
  return float(total / num_subsets / m)


def cache_key(data_cfg, resolution: int, num_images: int) -> str:
  """What the real statistics depend on: the data config, the resolution, the crop and the
  image count, as a readable prefix and a hash of the rest."""
  fields = {
    k: data_cfg[k]
    for k in sorted(data_cfg.keys())
    if k not in ("num_workers", "prefetch", "download", "on_bad_file")
  }
  text = json.dumps(
    {"data": fields, "resolution": resolution, "images": num_images}, sort_keys=True, default=str
  )
  name = str(data_cfg.get("name") or "data").replace("/", "-")
  return f"{name}_{resolution}px_{num_images}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def real_statistics(
  extractor: FeatureExtractor,
  data_cfg,
  resolution: int,
  num_images: int,
  cache_dir: Optional[str] = None,
) -> Dict[str, np.ndarray]:
  """``mu``, ``sigma`` and up to ``KID_FEATURES_KEPT`` features of ``num_images`` real
  training images as the training stream crops them (seed 0), from the cache if there."""
  from etils import epath  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.data import train_input  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

  directory = epath.Path(cache_dir or os.path.join(inception_weights.cache_dir(), "fid_stats"))
  path = directory / f"{cache_key(data_cfg, resolution, num_images)}.npz"
  if path.exists():
    with np.load(io.BytesIO(path.read_bytes())) as f:
      return {k: f[k] for k in f.files}
  iterator = train_input.train_iterator(
    data_cfg, resolution=resolution, batch_size=extractor.batch_size, seed=0
  )
  feats, done = [], 0
  while done < num_images:
    batch = np.asarray(next(iterator)["image"])
    images = np.clip(np.round((batch + 1.0) * 127.5), 0, 255).astype(np.uint8)
    feats.append(extractor(images[: num_images - done]))
    done += len(feats[-1])
  feats = np.concatenate(feats)
  stats = statistics(feats)
  keep = np.sort(
    np.random.default_rng(0).choice(len(feats), min(len(feats), KID_FEATURES_KEPT), replace=False)
  )
  stats["features"] = feats[keep]
  if jax.process_index() == 0:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **stats)
    tmp = directory / f"{path.name}.tmp{os.getpid()}"
    tmp.write_bytes(buffer.getvalue())
    tmp.rename(path)
  return stats


_EXTRACTORS: Dict[str, FeatureExtractor] = {}
SAMPLE_CHUNK = 1000  # Generated images held at once (as uint8) while their features are taken.


def extractor_for(weights_path: str = "") -> FeatureExtractor:
  """One extractor (weights loaded, program compiled once) per weights file and process."""
  if weights_path not in _EXTRACTORS:
    from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

    _EXTRACTORS[weights_path] = FeatureExtractor(inception_weights.load(weights_path))
  return _EXTRACTORS[weights_path]


def generator_scores(config, gan, num_samples: int, seed: int) -> Dict:
  """FID and KID of ``num_samples`` composites of the EMA generator ``gan`` (a
  ``restore.LoadedGAN``) against ``config.eval.fid_real_images`` real training images."""
  t = time.time()
  extractor = extractor_for(config.eval.fid_weights)
  real = real_statistics(extractor, config.data, gan.resolution, config.eval.fid_real_images)
  feats = []
  for i, start in enumerate(range(0, num_samples, SAMPLE_CHUNK)):
    n = min(SAMPLE_CHUNK, num_samples - start)
    _, composites = sampler.masks_and_composites(gan, n, seed + seeds.FID_CHUNK_STRIDE * i)
    feats.append(extractor(visualization.to_uint8(composites)))
  feats = np.concatenate(feats)
  return {
    "fid": fid_against_features(real["mu"], real["sigma"], feats),
    "kid": kid(real["features"], feats),
    "num_generated": int(num_samples),
    "num_real": int(config.eval.fid_real_images),
    "gan_step": int(gan.step),
    "real_statistics": cache_key(config.data, gan.resolution, config.eval.fid_real_images),
    "seconds": round(time.time() - t, 1),
  }
