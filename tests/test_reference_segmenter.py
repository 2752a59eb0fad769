"""The supervised reference segmenter (offline stand-in for Mask R-CNN): training lowers the
loss, output shapes, the detection rule, save / load, metrics on the test split. Its use as the
evaluation plug-in is exercised by tests/test_emergence_smoke.py."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from benchmarks import reference_segmenter as rs
from layered_gan_jax.data import synthetic

STEPS = 24


@pytest.fixture(scope="module")
def trained():
  history = []
  segmenter = rs.train_reference_segmenter(
    16, STEPS, seed=0, batch_size=16, width=8, levels=3, lr=3e-3, log_every=0, loss_history=history
  )
  return segmenter, history


def test_training_lowers_the_loss(trained):
  segmenter, history = trained
  assert len(history) == STEPS and all(np.isfinite(history))
  assert np.mean(history[-4:]) < np.mean(history[:4]) - 0.05
  assert segmenter.meta["steps"] == STEPS and segmenter.meta["resolution"] == 16


def test_output_shapes(trained):
  segmenter, _ = trained
  images = synthetic.generate("test", 0, 5, 16)["image"]
  proba = segmenter.predict_proba(images)
  assert proba.shape == (5, 16, 16) and proba.dtype == np.float32
  assert np.all((proba >= 0) & (proba <= 1))
  masks = segmenter(images)
  assert isinstance(masks, list) and len(masks) == 5
  for m in masks:
    assert m is None or (m.dtype == bool and m.shape == (16, 16))
  # Other sizes are resized to the training resolution and back.
  big = synthetic.generate("test", 0, 3, 32)["image"]
  assert segmenter.predict_proba(big).shape == (3, 32, 32)
  assert all(m is None or m.shape == (32, 32) for m in segmenter(big))
  assert segmenter(np.zeros((0, 16, 16, 3), np.uint8)) == []
  with pytest.raises(ValueError):
    segmenter(images.astype(np.float32))


def test_save_load_round_trip(trained, tmp_path):
  segmenter, _ = trained
  path = str(tmp_path / "seg.npz")
  segmenter.save(path)
  loaded = rs.load(path)
  assert loaded.meta == segmenter.meta
  images = synthetic.generate("test", 10, 6, 16)["image"]
  np.testing.assert_array_equal(loaded.predict_proba(images), segmenter.predict_proba(images))
  a, b = segmenter(images), loaded(images)
  assert [m is None for m in a] == [m is None for m in b]
  for x, y in zip(a, b):
    if x is not None:
      np.testing.assert_array_equal(x, y)


def _with_constant_output(segmenter, logit: float) -> rs.ReferenceSegmenter:
  flat = traverse_util.flatten_dict(jax.device_get(segmenter.params))
  final = [k for k in flat if k[0] == "Conv_0"]  # The 1x1 output conv of the U-Net.
  assert final
  for k in final:
    flat[k] = np.full_like(flat[k], logit if k[-1] == "bias" else 0.0)
  return rs.ReferenceSegmenter(traverse_util.unflatten_dict(flat), segmenter.meta)


def test_detection_rule(trained):
  segmenter, _ = trained
  images = synthetic.generate("test", 0, 4, 16)["image"]
  assert _with_constant_output(segmenter, -10.0)(images) == [None] * 4
  full = _with_constant_output(segmenter, 10.0)(images)
  assert all(m is not None and m.all() for m in full)

  # Exactly at the threshold: 1 pixel of 100 (1 %) is an object; none is not.
  class Fixed(rs.ReferenceSegmenter):
    def predict_proba(self, images):
      p = np.zeros((2, 10, 10), np.float32)
      p[0, 3, 4] = 0.9
      return p

  fixed = Fixed(segmenter.params, segmenter.meta)
  out = fixed(np.zeros((2, 10, 10, 3), np.uint8))
  assert out[0] is not None and out[0].sum() == 1 and out[1] is None
  assert rs.MIN_FRACTION == 0.01


def _naive_scores(proba, gt, min_fraction):
  """fg IoU, two-class mIoU, pixel accuracy, detected fraction, image by image in plain numpy."""
  fg, miou, acc, detected = [], [], [], []
  for p, g in zip(proba, gt):
    p = p >= 0.5
    iou = lambda a, b: np.sum(a & b) / np.sum(a | b) if np.sum(a | b) else 1.0
    fg.append(iou(p, g))
    miou.append(0.5 * (iou(p, g) + iou(~p, ~g)))
    acc.append(np.mean(p == g))
    detected.append(np.mean(p) >= min_fraction)
  return {
    "fg_iou": np.mean(fg),
    "miou": np.mean(miou),
    "pixel_accuracy": np.mean(acc),
    "detected_fraction": np.mean(detected),
  }


def test_evaluate_on_test(trained):
  """Scores on the first test images, against a naive computation: for a known predictor (the
  ground truth moved one pixel, nothing on the first image) and for the trained network."""
  segmenter, _ = trained
  data = synthetic.generate("test", 0, 8, 16, 0, synthetic.LAYOUT)
  gt = data["mask"].astype(bool)
  assert gt[0].any()  # So that the empty prediction on image 0 scores 0, not 1.

  class Shifted(rs.ReferenceSegmenter):
    def predict_proba(self, images):
      np.testing.assert_array_equal(images, data["image"])  # The same images, in order.
      p = np.where(np.roll(gt, 1, axis=2), 0.9, 0.2).astype(np.float32)
      p[0] = 0.2
      return p

  shifted = Shifted(segmenter.params, segmenter.meta)
  result = shifted.evaluate_on_test(num_examples=8)
  expected = _naive_scores(shifted.predict_proba(data["image"]), gt, rs.MIN_FRACTION)
  for key, value in expected.items():
    assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
  assert expected["detected_fraction"] == 7 / 8
  assert 0.3 < expected["fg_iou"] < 0.8  # Neither perfect nor empty: a real test of the formula.
  assert result["num_images"] == 8 and result["resolution"] == 16

  result = segmenter.evaluate_on_test(num_examples=8)
  expected = _naive_scores(segmenter.predict_proba(data["image"]), gt, segmenter.min_fraction)
  for key, value in expected.items():
    assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
