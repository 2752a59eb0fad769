"""Recomposition of generated layers into segmenter training pairs, against NumPy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from layered_gan_jax.nets import recompose


def naive_place(x, scale, flip, source, target):
  """out(p) = x(source + M (p - target) / scale), bilinear, zero outside; pixel loops."""
  h, w, c = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      qy = source[0] + (i + 0.5 - target[0]) / scale
      dx = (j + 0.5 - target[1]) / scale
      qx = source[1] + (-dx if flip else dx)
      u, v = qy - 0.5, qx - 0.5
      y0, x0 = int(np.floor(u)), int(np.floor(v))
      for yy, wy in ((y0, 1 - (u - y0)), (y0 + 1, u - y0)):
        for xx, wx in ((x0, 1 - (v - x0)), (x0 + 1, v - x0)):
          if 0 <= yy < h and 0 <= xx < w:
            out[i, j] += wy * wx * x[yy, xx]
  return out


def _placement(scale, flip, source, target):
  return {
    "scale": jnp.asarray(scale, jnp.float32),
    "flip": jnp.asarray(flip),
    "source": jnp.asarray(source, jnp.float32),
    "target": jnp.asarray(target, jnp.float32),
  }


def test_place_matches_naive_bilinear():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (3, 12, 10, 2)).astype(np.float32)
  scale, flip = [0.7, 1.3, 1.0], [False, True, True]
  source, target = [[5.2, 4.9], [6.0, 5.0], [3.3, 7.1]], [[6.1, 3.7], [5.5, 5.5], [8.0, 2.2]]
  got = np.asarray(recompose.place(jnp.asarray(x), _placement(scale, flip, source, target)))
  for b in range(3):
    np.testing.assert_allclose(
      got[b], naive_place(x[b], scale[b], flip[b], source[b], target[b]), atol=1e-5
    )


def test_a_known_transform_moves_a_known_mask_exactly():
  m = np.zeros((1, 16, 16, 1), np.float32)
  m[0, 2:6, 3:5] = 1.0  # rows 2..5, columns 3..4: centroid (4, 4)
  m[0, 2, 5] = 1.0  # a nub on the right of the top row, so a mirror is visible
  geo = recompose.mask_geometry(jnp.asarray(m[..., 0]))
  np.testing.assert_allclose(np.asarray(geo["lo"]), [[2, 3]])
  np.testing.assert_allclose(np.asarray(geo["hi"]), [[6, 6]])
  src = np.asarray(geo["centroid"])[0]
  # Pure translation by (+7, +5) pixels: an exact shift.
  moved = np.asarray(
    recompose.place(jnp.asarray(m), _placement([1.0], [False], [src], [src + [7, 5]]))
  )
  want = np.zeros_like(m)
  want[0, 9:13, 8:10] = 1.0
  want[0, 9, 10] = 1.0
  np.testing.assert_allclose(moved, want, atol=1e-6)
  # Mirror about the centroid column: the nub moves to the left side.
  c = np.array([4.0, 4.0])
  mirrored = np.asarray(recompose.place(jnp.asarray(m), _placement([1.0], [True], [c], [c])))
  want = np.zeros_like(m)
  want[0, 2:6, 3:5] = 1.0
  want[0, 2, 2] = 1.0
  np.testing.assert_allclose(mirrored, want, atol=1e-6)
  # Scale 2 about the block's centre (4, 4), moved to (8, 8): an 8 x 4 block at rows 4..11,
  # columns 6..9 after thresholding at 0.5.
  block = np.zeros((1, 16, 16, 1), np.float32)
  block[0, 2:6, 3:5] = 1.0
  big = np.asarray(
    recompose.place(jnp.asarray(block), _placement([2.0], [False], [c], [[8.0, 8.0]]))
  )
  want = np.zeros((16, 16), bool)
  want[4:12, 6:10] = True
  np.testing.assert_array_equal(big[0, ..., 0] >= 0.5, want)


def _cfg(**kw):
  cfg = dict(
    recompose=True,
    scale_range=(0.6, 1.5),
    translate=True,
    max_cut=0.2,
    flip_prob=0.5,
    swap_background_prob=0.5,
    color_jitter=0.0,
    min_area=0.02,
    max_area=0.9,
    max_uncertainty=0.15,
  )
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _layers(batch=6, r=16, seed=0):
  rng = np.random.default_rng(seed)
  mask = np.zeros((batch, r, r, 1), np.float32)
  for b in range(batch):
    y, x = rng.integers(3, r - 8, 2)
    mask[b, y : y + 5, x : x + 4] = 1.0
  return {
    "background": jnp.asarray(rng.uniform(-1, 1, (batch, r, r, 3)), jnp.float32),
    "foreground": jnp.asarray(rng.uniform(-1, 1, (batch, r, r, 3)), jnp.float32),
    "mask": jnp.asarray(mask),
  }


def test_labels_are_aligned_with_the_images():
  """Where the label is 1 (a binary mask moved by whole pixels) the image is the moved
  foreground, elsewhere a background (own or the previous sample's)."""
  layers = _layers()
  cfg = _cfg(scale_range=(1.0, 1.0), flip_prob=0.0)
  key = jax.random.PRNGKey(3)
  # Integer targets relative to the centroids keep the resampling exact: check through place.
  images, labels, weights = recompose.recompose(key, layers, cfg)
  k_place, k_swap, _ = jax.random.split(key, 3)
  placement = recompose.sample_placement(
    k_place, layers["mask"][..., 0], scale_range=(1, 1), max_cut=0.2, flip_prob=0.0
  )
  moved = np.asarray(
    recompose.place(jnp.concatenate([layers["foreground"], layers["mask"]], -1), placement)
  )
  fg, m = moved[..., :3], moved[..., 3:]
  np.testing.assert_array_equal(np.asarray(labels), (m[..., 0] >= 0.5).astype(np.float32))
  swap = np.asarray(jax.random.uniform(k_swap, (6, 1, 1, 1)) < 0.5)
  bg = np.where(
    swap, np.roll(np.asarray(layers["background"]), 1, axis=0), np.asarray(layers["background"])
  )
  np.testing.assert_allclose(np.asarray(images), m * fg + (1 - m) * bg, atol=1e-6)
  assert 0 < swap.sum() < 6
  np.testing.assert_array_equal(np.asarray(weights), np.ones(6))


def test_placements_keep_most_of_the_mask_inside_the_frame():
  layers = _layers(batch=64, r=32, seed=1)
  cfg = _cfg()
  for seed in range(4):
    _, labels, _ = recompose.recompose(jax.random.PRNGKey(seed), layers, cfg)
    placement = recompose.sample_placement(
      jax.random.split(jax.random.PRNGKey(seed), 3)[0],
      layers["mask"][..., 0],
      scale_range=cfg.scale_range,
      max_cut=cfg.max_cut,
      flip_prob=cfg.flip_prob,
    )
    s = np.asarray(placement["scale"])
    assert np.all((s >= 0.6 - 1e-6) & (s <= 1.5 + 1e-6))
    # The label holds at least (1 - 0.2)^2 of the scaled object's area, minus edge pixels.
    area_before = np.asarray(layers["mask"]).sum(axis=(1, 2, 3)) * s**2
    area_after = np.asarray(labels).sum(axis=(1, 2))
    assert np.all(area_after >= 0.64 * area_before - 2 * 5 * s - 4), (area_after, area_before)
  flips = np.asarray(placement["flip"])
  assert 0 < flips.sum() < 64
  # Without translation the centroid is the fixed point: only scale and mirror act.
  still = recompose.sample_placement(
    jax.random.PRNGKey(0),
    layers["mask"][..., 0],
    scale_range=(0.6, 1.5),
    max_cut=0.2,
    flip_prob=0.5,
    translate=False,
  )
  np.testing.assert_array_equal(np.asarray(still["target"]), np.asarray(still["source"]))


def test_recompose_off_gives_the_generators_own_pairs():
  layers = _layers()
  images, labels, _ = recompose.recompose(jax.random.PRNGKey(0), layers, _cfg(recompose=False))
  m = np.asarray(layers["mask"])
  np.testing.assert_allclose(
    np.asarray(images),
    m * np.asarray(layers["foreground"]) + (1 - m) * np.asarray(layers["background"]),
    atol=1e-6,
  )
  np.testing.assert_array_equal(np.asarray(labels), m[..., 0])


def test_mask_filter():
  r = 10
  masks = np.zeros((5, r, r), np.float32)
  masks[1, :3, :3] = 1.0  # area 0.09, binary: kept
  masks[2] = 1.0  # full: area 1 > max_area
  masks[3] = 0.45  # undecided everywhere: uncertainty 0.45
  masks[4, :5] = 0.95  # area 0.5, uncertainty 0.05 * 0.5 + 0 -> kept
  keep = recompose.mask_filter(
    jnp.asarray(masks), min_area=0.02, max_area=0.9, max_uncertainty=0.15
  )
  np.testing.assert_array_equal(np.asarray(keep), [False, True, False, False, True])
  keep = recompose.mask_filter(jnp.asarray(masks), min_area=0.0, max_area=1.0, max_uncertainty=0.5)
  assert np.all(np.asarray(keep))


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_color_jitter_stays_in_range(strength):
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)), jnp.float32)
  y = np.asarray(recompose.color_jitter(jax.random.PRNGKey(0), x, strength))
  assert y.min() >= -1 and y.max() <= 1
  if strength == 0.0:
    np.testing.assert_allclose(y, np.asarray(x), atol=1e-6)
  else:
    assert np.abs(y - np.asarray(x)).max() > 0.01
