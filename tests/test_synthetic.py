"""The embedded synthetic dataset: determinism, exact masks, disjoint splits, object sizes."""

import cv2
import numpy as np
import pytest

from layered_gan_jax.data import synthetic, textures
from layered_gan_jax.metrics import baselines, segmentation


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_shapes_dtypes_and_binary_masks(resolution):
  image, mask = synthetic.render_example("train", 3, resolution)
  assert image.shape == (resolution, resolution, 3) and image.dtype == np.uint8
  assert mask.shape == (resolution, resolution) and mask.dtype == np.uint8
  assert set(np.unique(mask)) <= {0, 1}
  data = synthetic.generate("test", 5, 3, resolution)
  assert data["image"].shape == (3, resolution, resolution, 3)
  assert data["mask"].shape == (3, resolution, resolution)
  assert data["image"].dtype == np.uint8 and data["mask"].dtype == np.uint8


def test_deterministic_from_seed_split_index():
  a = synthetic.generate("train", 10, 8, 32, seed=7)
  b = synthetic.generate("train", 10, 8, 32, seed=7)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["mask"], b["mask"])
  # generate() is render_example() stacked.
  image, mask = synthetic.render_example("train", 13, 32, seed=7)
  np.testing.assert_array_equal(a["image"][3], image)
  np.testing.assert_array_equal(a["mask"][3], mask)
  # Another seed gives other scenes (every one of them).
  c = synthetic.generate("train", 10, 8, 32, seed=8)
  for i in range(8):
    assert not np.array_equal(a["image"][i], c["image"][i])
  assert not np.array_equal(a["mask"], c["mask"])


def test_image_is_exact_composite_of_layers():
  """Every mask pixel shows the object layer, every other pixel the background layer."""
  for resolution in (16, 64, 128):
    for index in range(12):
      bg, fg, mask = synthetic.render_layers("test", index, resolution)
      image, mask2 = synthetic.render_example("test", index, resolution)
      np.testing.assert_array_equal(mask, mask2)
      np.testing.assert_array_equal(image, np.where(mask[..., None] == 1, fg, bg))
      # The layers differ on the object, so the mask is visible in the image.
      assert np.any(fg[mask == 1] != bg[mask == 1])


def test_splits_are_disjoint():
  train = synthetic.generate("train", 0, 60, 16)
  test = synthetic.generate("test", 0, 60, 16)
  train_keys = {im.tobytes() for im in train["image"]}
  test_keys = {im.tobytes() for im in test["image"]}
  assert len(train_keys) == 60 and len(test_keys) == 60
  assert not train_keys & test_keys


def test_object_areas_within_documented_range():
  for resolution, count in ((16, 400), (32, 200), (64, 300), (128, 40)):
    areas = synthetic.generate("test", 0, count, resolution)["mask"].mean(axis=(1, 2))
    assert areas.min() >= synthetic.MIN_OBJECT_AREA, (resolution, areas.min())
    assert areas.max() <= synthetic.MAX_OBJECT_AREA, (resolution, areas.max())
    assert 0.15 < areas.mean() < 0.26
    assert areas.std() > 0.05  # varied sizes


def test_objects_keep_the_margin_at_every_resolution():
  """No object pixel lies within the layout's margin of a border, at any resolution; some come
  close."""
  for resolution, count in ((16, 300), (32, 300), (64, 300), (128, 60)):
    masks = synthetic.generate("train", 0, count, resolution)["mask"]
    band = int(synthetic.LAYOUT.margin * resolution)  # pixel centres closer than the margin
    for side in (masks[:, :band], masks[:, -band:], masks[:, :, :band], masks[:, :, -band:]):
      assert not side.any(), resolution
    rows = masks.any(axis=2)
    first = np.array([np.flatnonzero(r)[0] for r in rows])
    assert np.mean(first <= band + max(1, resolution // 32)) > 0.05  # the margin is used


def test_polygon_vertices_are_wrapped():
  """Jittered first vertices below -pi are wrapped: every shape lies within its unit circle."""
  gx, gy = textures.grid(128)
  for index in range(200):
    rng = synthetic._rng("train", index, 0)
    textures.random_colors(rng, 12)
    shape = synthetic._Shape(rng)
    if shape.kind not in ("polygon", "star"):
      continue
    assert np.all(np.diff(shape.angles) > 0) and shape.angles[0] >= -np.pi
    shape.cx = shape.cy = 0.5
    shape.scale = 0.25
    inside = shape.inside(gx, gy)
    r = np.hypot(gx[inside] - 0.5, gy[inside] - 0.5) / 0.25
    assert r.max() <= 1.0 + 1e-6, index


def test_rim_shading_darkens_towards_the_outline():
  """The object layer's darkening rim: the factor is 1 - strength at the edge, 1 past width."""
  rng = np.random.default_rng(0)
  n = 64
  mask = np.zeros((n, n), np.uint8)
  mask[16:48, 16:48] = 1
  fg = np.full((n, n, 3), 0.8, np.float32)
  out = textures.rim_shading(np.random.default_rng(0), fg, mask, n)
  width = rng.uniform(0.04, 0.08)
  strength = rng.uniform(0.35, 0.7)
  for depth_px in range(0, 16):  # row 16 + depth, middle column: distance to the top edge
    got = out[16 + depth_px, 32, 0]
    depth = (depth_px + 0.5) / n  # the edge lies half a pixel before the first row's centre
    want = 0.8 * (1.0 - strength * max(1.0 - depth / width, 0.0))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_variety_of_objects():
  masks = synthetic.generate("train", 0, 200, 32)["mask"]
  with_hole = 0
  for m in masks:
    # A hole: a background component that does not touch the border.
    count, labels = cv2.connectedComponents((1 - m).astype(np.uint8), connectivity=4)
    border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    with_hole += any(k not in border for k in range(1, count))
  assert 0.05 < with_hole / len(masks) < 0.5
  # The object is one coherent region (its largest 8-connected component holds nearly all of it).
  for m in masks[:50]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    assert stats[1:, cv2.CC_STAT_AREA].max() >= 0.97 * m.sum()


def test_same_scene_at_every_resolution():
  for index in range(6):
    _, m128 = synthetic.render_example("train", index, 128)
    _, m32 = synthetic.render_example("train", index, 32)
    down = segmentation.resize_to(m128, (32, 32), mode="area")
    assert segmentation.foreground_iou(down, m32) > 0.9


def test_colour_alone_does_not_separate_objects():
  data = synthetic.generate("test", 0, 150, 32)
  *_, iou = baselines.fit_color_threshold(data["image"], data["mask"])
  assert iou < 0.4


@pytest.mark.parametrize("resolution", [0, 8, 24, 48, 100, 256, 64.0, "64", True, None])
def test_bad_resolution_raises(resolution):
  with pytest.raises(ValueError, match="resolution"):
    synthetic.render_example("train", 0, resolution)
  with pytest.raises(ValueError, match="resolution"):
    synthetic.generate("train", 0, 2, resolution)


def test_bad_split_index_seed_raise():
  with pytest.raises(ValueError, match="split"):
    synthetic.render_example("validation", 0, 32)
  with pytest.raises(ValueError, match="index"):
    synthetic.render_example("train", -1, 32)
  with pytest.raises(ValueError, match="seed"):
    synthetic.render_example("train", 0, 32, seed=-3)


def test_split_sizes():
  assert synthetic.SPLIT_SIZES == {"train": 20000, "test": 1000}
  # Indices beyond the nominal size are still valid.
  image, _ = synthetic.render_example("test", synthetic.SPLIT_SIZES["test"] + 5, 16)
  assert image.shape == (16, 16, 3)


def test_a_layout_variant_from_the_data_config_reaches_training_and_evaluation():
  """--config.data.synthetic_layout.* (unset fields: the dataset's own) changes the images of
  the training stream and of the evaluation split alike; a bad layout is refused by the data
  config's check with the field's name."""
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import (
    eval_input,  # pylint: disable=g-import-not-at-top
    train_input,  # pylint: disable=g-import-not-at-top
  )

  own = {"name": "synthetic", "num_train_examples": 50, "random_crop": False}
  variant = dict(
    own, synthetic_layout={"margin": -0.15, "rim_probability": 0.0, "bg_textures": None}
  )
  layout = data_config.synthetic_layout(variant)
  assert layout == synthetic.Layout(margin=-0.15, rim_probability=0.0)
  assert data_config.synthetic_layout(own) == synthetic.LAYOUT
  masks = synthetic.generate("train", 0, 50, 32, layout=layout)["mask"]
  assert masks[:, 0].any()  # a negative margin lets objects reach the border again
  for cfg, lay in ((own, synthetic.LAYOUT), (variant, layout)):
    batch = next(eval_input.eval_dataset(cfg, resolution=32, batch_size=4, max_examples=4))
    np.testing.assert_array_equal(
      np.asarray(batch["mask"]).reshape(4, 32, 32),
      synthetic.generate("test", 0, 4, 32, layout=lay)["mask"],
    )
  first = [
    next(train_input.train_iterator(cfg, resolution=32, batch_size=4, seed=0))["image"]
    for cfg in (own, variant)
  ]
  assert not np.array_equal(first[0], first[1])
  for bad, field in (
    ({"margin": 0.7}, "margin"),
    ({"bg_textures": (1, 2, 3)}, "bg_textures"),
    ({"rim_probability": 2.0}, "rim_probability"),
    ({"colour": 1}, "colour"),
  ):
    with pytest.raises(ValueError, match=field):
      data_config.validate_data_config(dict(own, synthetic_layout=bad))
