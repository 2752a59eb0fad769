"""Segmentation metrics against hand-worked cases, and the trivial baselines."""

import numpy as np
import pytest

from layered_gan_jax.data import synthetic
from layered_gan_jax.metrics import baselines, segmentation


def _m(rows):
  return np.array(rows, dtype=np.uint8)


# A 2x4 ground truth with 3 foreground pixels and a prediction with 2 hits, 1 false alarm.
GT = _m([[1, 1, 1, 0], [0, 0, 0, 0]])
PRED = _m([[0, 1, 1, 1], [0, 0, 0, 0]])


def test_partial_overlap_by_hand():
  # fg: TP = 2, FP = 1, FN = 1 -> IoU 2 / 4. bg: 4 shared of 6 in the union -> 4 / 6.
  assert segmentation.foreground_iou(PRED, GT) == pytest.approx(0.5)
  assert segmentation.background_iou(PRED, GT) == pytest.approx(4 / 6)
  assert segmentation.mean_iou_two_class(PRED, GT) == pytest.approx((0.5 + 4 / 6) / 2)
  assert segmentation.pixel_accuracy(PRED, GT) == pytest.approx(6 / 8)
  # F-beta, b2 = 0.3: P = R = 2/3, so F = 2/3.
  assert segmentation.f_beta(PRED, GT) == pytest.approx(2 / 3)
  # Unequal precision and recall: TP = 1, FP = 0, FN = 2: P = 1, R = 1/3.
  pred = _m([[1, 0, 0, 0], [0, 0, 0, 0]])
  p, r = 1.0, 1 / 3
  assert segmentation.f_beta(pred, GT) == pytest.approx(1.3 * p * r / (0.3 * p + r))
  assert segmentation.max_f_beta(pred, GT) == pytest.approx(1.3 * p * r / (0.3 * p + r))


def test_empty_and_full_conventions():
  empty = np.zeros((4, 4), np.uint8)
  full = np.ones((4, 4), np.uint8)
  assert segmentation.foreground_iou(empty, empty) == 1.0
  assert segmentation.mean_iou_two_class(empty, empty) == 1.0
  assert segmentation.pixel_accuracy(empty, empty) == 1.0
  assert segmentation.max_f_beta(empty, empty) == 1.0
  assert segmentation.foreground_iou(full, full) == 1.0
  assert segmentation.mean_iou_two_class(full, full) == 1.0
  assert segmentation.foreground_iou(empty, full) == 0.0
  assert segmentation.foreground_iou(full, empty) == 0.0
  assert segmentation.max_f_beta(full, empty) == 0.0
  # Full prediction on a 3-pixel object of 8: IoU = 3/8; mIoU = (3/8 + 0) / 2.
  assert segmentation.foreground_iou(np.ones_like(GT), GT) == pytest.approx(3 / 8)
  assert segmentation.mean_iou_two_class(np.ones_like(GT), GT) == pytest.approx(3 / 16)


def test_complement_scores_zero():
  comp = 1 - GT
  assert segmentation.foreground_iou(comp, GT) == 0.0
  assert segmentation.pixel_accuracy(comp, GT) == 0.0
  assert segmentation.mean_iou_two_class(comp, GT) == 0.0


def test_batched_per_image_and_mask_encodings():
  pred = np.stack([PRED, GT, 1 - GT])
  gt = np.stack([GT, GT, GT])
  np.testing.assert_allclose(segmentation.foreground_iou(pred, gt), [0.5, 1.0, 0.0])
  np.testing.assert_allclose(segmentation.pixel_accuracy(pred, gt), [0.75, 1.0, 0.0])
  # bool, {0, 1} and {0, 255} masks are the same masks.
  np.testing.assert_allclose(
    segmentation.foreground_iou(pred.astype(bool), gt * 255), [0.5, 1.0, 0.0]
  )
  result = segmentation.segmentation_metrics(pred, gt)
  assert set(result) == {"fg_iou", "miou", "pixel_accuracy", "max_fbeta"}
  assert result["fg_iou"] == pytest.approx(0.5)
  assert result["pixel_accuracy"] == pytest.approx(1.75 / 3)
  assert result["miou"] == pytest.approx(((0.5 + 4 / 6) / 2 + 1.0 + 0.0) / 3)
  assert result["max_fbeta"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
  with pytest.raises(ValueError, match="shape"):
    segmentation.foreground_iou(pred, gt[:, :1])


def test_max_f_beta_soft_scores_by_hand():
  gt = _m([[1, 1, 0, 0]])
  scores = np.array([[0.9, 0.4, 0.6, 0.1]], np.float32)
  # Thresholds in (0.6, 0.9]: {0} -> P 1, R 1/2, F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125.
  # (0.4, 0.6]: {0, 2} -> P = R = 1/2, F = 1/2. (0.1, 0.4]: {0, 1, 2} -> P 2/3, R 1,
  # F = 1.3 * (2/3) / (0.3 * 2/3 + 1) = 0.7222. (0, 0.1]: all -> P 1/2, R 1, F = 0.65 / 1.15.
  assert segmentation.max_f_beta(scores, gt) == pytest.approx(0.8125)
  assert segmentation.max_f_beta(scores, gt, beta2=1.0) == pytest.approx(
    0.8
  )  # the 0.4 cut: 2*2/3/(5/3)
  # uint8 maps are read as s / 255: the same answer.
  assert segmentation.max_f_beta((scores * 255).round().astype(np.uint8), gt) == pytest.approx(
    0.8125
  )
  # A score exactly at a threshold k / 255 counts as above it.
  at = np.array([[100 / 255, 100 / 255, 99 / 255, 0.0]], np.float32)
  assert segmentation.max_f_beta(at, gt) == pytest.approx(1.0)
  # Binary maps: the F-beta of the mask itself.
  pred = _m([[1, 0, 1, 1]])
  assert segmentation.max_f_beta(pred, gt) == pytest.approx(segmentation.f_beta(pred, gt))
  assert segmentation.max_f_beta(pred.astype(np.float32), gt) == pytest.approx(
    segmentation.f_beta(pred, gt)
  )


def test_binarize_and_resize():
  soft = np.array([[0.2, 0.5, 0.7]])
  np.testing.assert_array_equal(segmentation.binarize(soft), [[False, True, True]])
  np.testing.assert_array_equal(
    segmentation.binarize(np.array([[0, 127, 128, 255]], np.uint8)), [[False, False, True, True]]
  )
  np.testing.assert_array_equal(
    segmentation.binarize(np.array([[0, 1, 1]], np.uint8)), [[False, True, True]]
  )
  m = np.zeros((8, 8), np.uint8)
  m[2:6, 2:6] = 1
  small = segmentation.resize_to(m, (4, 4), mode="area")
  np.testing.assert_array_equal(small[1:3, 1:3], 1)
  assert small.sum() == 4
  np.testing.assert_array_equal(segmentation.resize_to(small, (8, 8)), m)
  assert segmentation.resize_to(np.stack([m, m]), (4, 4)).shape == (2, 4, 4)


def test_baselines_on_synthetic_split():
  data = synthetic.generate("test", 0, 24, 32)
  images, gt = data["image"], data["mask"]
  mean_area = gt.mean()
  full = baselines.full_image(images)
  assert full.shape == gt.shape and full.dtype == np.uint8
  # full-image IoU of an image is its object's area; averaged: the mean object area.
  assert segmentation.segmentation_metrics(full, gt)["fg_iou"] == pytest.approx(mean_area)
  for name, fn in baselines.BASELINES.items():
    masks = fn(images)
    assert masks.shape == gt.shape and masks.dtype == np.uint8, name
    assert set(np.unique(masks)) <= {0, 1}, name
  grab = baselines.grabcut(images)
  np.testing.assert_array_equal(grab, baselines.grabcut(images))  # reproducible
  assert 0.0 < segmentation.segmentation_metrics(grab, gt)["fg_iou"] < 1.0
  # The oracle threshold is at least as good as the trivial rules it can express (all fg).
  rule = baselines.fit_color_threshold(images, gt)
  thr = baselines.color_threshold(images, gt)
  assert segmentation.segmentation_metrics(thr, gt)["fg_iou"] == pytest.approx(rule[3])
  assert rule[3] >= mean_area - 1e-9


def test_baselines_hand_cases():
  img = np.zeros((1, 16, 16, 3), np.uint8)
  img[0, 4:12, 4:12] = (200, 50, 50)  # a red square on black
  gt = np.zeros((1, 16, 16), np.uint8)
  gt[0, 4:12, 4:12] = 1
  assert segmentation.foreground_iou(baselines.kmeans_color(img), gt)[0] == 1.0
  assert segmentation.foreground_iou(baselines.color_threshold(img, gt), gt)[0] == 1.0
  channel, threshold, polarity, iou = baselines.fit_color_threshold(img, gt)
  assert iou == 1.0
  prior = baselines.center_prior(img)[0]
  assert prior[8, 8] == 1 and prior[0, 0] == 0
  assert prior.mean() == pytest.approx(np.pi * 0.3**2, abs=0.03)
  # Degenerate inputs: a flat image (k-means and GrabCut find no object), and an image too
  # small for a rectangle inside the border (OpenCV raises; the baseline falls back).
  flat = np.full((2, 16, 16, 3), 128, np.uint8)
  out = baselines.grabcut(flat)
  assert out.shape == (2, 16, 16) and out.dtype == np.uint8
  assert baselines.kmeans_color(flat).sum() == 0
  tiny = baselines.grabcut(np.zeros((1, 2, 2, 3), np.uint8))
  assert tiny.shape == (1, 2, 2) and tiny.dtype == np.uint8
  with pytest.raises(ValueError, match="N, H, W, 3"):
    baselines.full_image(img[0])


def test_perfect_and_inverted_predictors_score_one_and_zero():
  """evaluate.score_masks (what evaluate() reports): the ground truth as prediction gives fg
  IoU = mIoU = max F-beta = 1; its complement gives fg IoU 0 and max F-beta 0."""
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(3)
  gt = np.zeros((6, 16, 16), np.float32)
  for i in range(6):
    y, x = rng.integers(2, 8, 2)
    gt[i, y : y + 6, x : x + 5] = 1
  perfect = evaluate.score_masks(gt.copy(), gt)
  assert perfect["fg_iou"] == 1.0 and perfect["miou"] == 1.0 and perfect["max_fbeta"] == 1.0
  inverse = evaluate.score_masks(1.0 - gt, gt)
  assert inverse["fg_iou"] == 0.0 and inverse["max_fbeta"] == pytest.approx(0.0, abs=1e-9)


def test_grabcut_finds_a_clear_square_and_is_not_its_rectangle():
  img = np.full((1, 32, 32, 3), 40, np.uint8)
  img[0, 10:22, 9:21] = (230, 200, 30)  # a yellow square on a flat dark background
  gt = np.zeros((1, 32, 32), np.uint8)
  gt[0, 10:22, 9:21] = 1
  out = baselines.grabcut(img)
  assert segmentation.foreground_iou(out, gt)[0] > 0.8
  m = max(1, 32 // 16)
  rectangle = np.zeros((32, 32), np.uint8)
  rectangle[m : 32 - m, m : 32 - m] = 1  # the fallback mask when OpenCV fails
  assert not np.array_equal(out[0], rectangle)
  assert segmentation.foreground_iou(rectangle[None], gt)[0] < 0.2


def test_sample_mask_statistics_by_hand():
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  masks = np.zeros((3, 8, 8), np.float32)
  masks[0, 0:2, 0:2] = 1.0  # centroid (0.5, 0.5), coverage 4/64
  masks[1, 4:8, 4:8] = 0.95  # centroid (5.5, 5.5), coverage 16/64, near-binary
  masks[2, 2:4, 6:8] = 0.6  # centroid (2.5, 6.5), coverage 4/64, not near-binary
  stats = evaluate.sample_mask_statistics(masks, np.zeros((3, 8, 8, 3), np.float32))
  cov = np.array([4, 16, 4]) / 64
  assert stats["binarized_coverage_mean"] == pytest.approx(cov.mean())
  assert stats["binarized_coverage_std"] == pytest.approx(cov.std())
  assert stats["mask_coverage"] == pytest.approx(masks.mean())
  assert stats["mask_binary_fraction"] == pytest.approx(1 - 4 / 192)
  cy, cx = np.array([0.5, 5.5, 2.5]), np.array([0.5, 5.5, 6.5])
  assert stats["centroid_spread_px"] == pytest.approx(np.sqrt(cy.var() + cx.var()))
  assert evaluate.centroid_spread(np.zeros((4, 8, 8), bool)) == 0.0


def test_center_prior_is_the_hand_built_centred_ellipse_on_an_odd_non_square_image():
  """15 x 22 pixels: the ellipse with semi-axes 0.3 x the height and width around the image's
  centre, pixel by pixel (a pixel is inside when its centre is); symmetric about both centre
  lines, its centroid the image's centre."""
  h, w = 15, 22
  want = np.zeros((h, w), np.uint8)
  for i in range(h):
    for j in range(w):
      dy, dx = (i + 0.5 - h / 2) / (0.3 * h), (j + 0.5 - w / 2) / (0.3 * w)
      want[i, j] = dy * dy + dx * dx <= 1.0
  got = baselines.center_prior(np.zeros((2, h, w, 3), np.uint8))
  assert got.shape == (2, h, w) and got.dtype == np.uint8
  np.testing.assert_array_equal(got[0], want)
  np.testing.assert_array_equal(got[1], want)
  np.testing.assert_array_equal(got[0], got[0, ::-1])
  np.testing.assert_array_equal(got[0], got[0, :, ::-1])
  rows, cols = np.nonzero(got[0])
  assert (rows.mean(), cols.mean()) == ((h - 1) / 2, (w - 1) / 2)


def test_full_image_and_threshold_baselines_on_known_images():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 9, 13, 3), dtype=np.uint8)
  full = baselines.full_image(images)
  assert full.shape == (3, 9, 13) and full.dtype == np.uint8 and (full == 1).all()
  # Green decides: foreground pixels have G >= 150, background G < 100; R and B are noise.
  gt = rng.random((3, 9, 13)) < 0.4
  images[..., 1] = np.where(gt, rng.integers(150, 256, gt.shape), rng.integers(0, 100, gt.shape))
  channel, threshold, polarity, iou = baselines.fit_color_threshold(images, gt)
  assert (channel, polarity, iou) == ("g", "above", 1.0)
  assert images[..., 1][~gt].max() < threshold <= images[..., 1][gt].min()
  np.testing.assert_array_equal(baselines.color_threshold(images, gt), gt.astype(np.uint8))
  # The inverted rule: foreground is dark in blue.
  images[..., 2] = np.where(gt, 10, 240)
  images[..., 1] = 128
  assert baselines.fit_color_threshold(images, gt, ("b",))[2:] == ("below", 1.0)
