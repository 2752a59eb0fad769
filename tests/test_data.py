"""Tests for layered_gan_jax.data: transforms, determinism, resumption, multi-host global
batches, evaluation masks, folders of mixed files, bad files, and tfds (mock data, offline)."""

import io
import os
import threading

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import (
  eval_input,
  image_io,
  synthetic,
  tfds_sources,
  train_input,
  transforms,
)
from layered_gan_jax.errors import DataError


def _cfg(**kw):
  base = dict(name="synthetic", num_workers=2, prefetch=2)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _take(it, n):
  out = [next(it)["image"] for _ in range(n)]
  it.close()
  return out


# --------------------------------------------------------------------------------------------
# Transform against a NumPy reference.


def _triangle_weights(in_size, out_size):
  """Antialiased bilinear (PIL BILINEAR) resampling matrix [out, in], written naively."""
  scale = in_size / out_size
  fs = max(scale, 1.0)
  w = np.zeros((out_size, in_size))
  for i in range(out_size):
    center = (i + 0.5) * scale
    for x in range(in_size):
      w[i, x] = max(0.0, 1.0 - abs((x + 0.5 - center) / fs))
    w[i] /= w[i].sum()
  return w


def _naive_resize(img, size):
  wy, wx = _triangle_weights(img.shape[0], size), _triangle_weights(img.shape[1], size)
  return np.einsum("yh,hwc,xw->yxc", wy, img.astype(np.float64), wx)


def test_resize_is_antialiased_bilinear():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (53, 37, 3), dtype=np.uint8)
  for size in (9, 18, 40, 72):  # Down and up.
    ours = transforms.resize_square(img, size).astype(np.float64)
    assert ours.shape == (size, size, 3)
    np.testing.assert_allclose(ours, _naive_resize(img, size), atol=1.01)  # PIL rounds twice.


def test_train_transform_is_resize_then_crop():
  rng = np.random.default_rng(1)
  img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
  r = 32
  s = transforms.crop_size(r, 1.125)
  assert s == 36 and transforms.crop_size(64) == 72 and transforms.crop_size(128) == 144
  assert transforms.crop_size(4) == 5  # Rounds half up.
  for oy, ox in [(0, 0), (4, 4), (1, 3)]:
    out = transforms.train_transform(img, r, s, np.array([oy, ox]))
    np.testing.assert_array_equal(out, transforms.resize_square(img, s)[oy : oy + r, ox : ox + r])
    np.testing.assert_allclose(out, _naive_resize(img, s)[oy : oy + r, ox : ox + r], atol=1.01)
  np.testing.assert_array_equal(
    transforms.train_transform(img, r, s, None), transforms.resize_square(img, r)
  )
  x = transforms.to_float(np.array([0, 127, 255], np.uint8))
  np.testing.assert_allclose(x, [-1.0, 127 / 127.5 - 1, 1.0])


def test_crop_offsets_pure_and_uniform():
  a = transforms.crop_offsets(3, np.zeros(4000, int), np.arange(4000), 8)
  b = transforms.crop_offsets(3, np.zeros(4000, int), np.arange(4000), 8)
  np.testing.assert_array_equal(a, b)
  assert a.min() == 0 and a.max() == 8
  counts = np.bincount(a[:, 0], minlength=9)
  assert counts.min() > 4000 / 9 * 0.8  # Roughly uniform.
  assert not np.array_equal(a, transforms.crop_offsets(3, np.ones(4000, int), np.arange(4000), 8))
  assert not np.array_equal(a, transforms.crop_offsets(4, np.zeros(4000, int), np.arange(4000), 8))


# --------------------------------------------------------------------------------------------
# Training stream: determinism, resumption, multi-host global batches, epochs.


def _train(cfg, seed=0, start=0, pi=0, pc=1, r=16, b=8):
  return train_input.train_iterator(
    cfg,
    resolution=r,
    batch_size=b,
    seed=seed,
    start_index=start,
    process_index=pi,
    process_count=pc,
  )


def test_batches_shape_range_and_determinism():
  cfg = _cfg(num_train_examples=20)
  a = _take(_train(cfg), 4)
  b = _take(_train(cfg), 4)
  c = _take(_train(cfg, seed=1), 4)
  for x, y in zip(a, b):
    assert x.shape == (8, 16, 16, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])


def test_resume_matches_uninterrupted_run_across_epochs():
  cfg = _cfg(num_train_examples=20)  # 8-image batches straddle the 20-image epochs.
  full = _take(_train(cfg), 7)
  it = _train(cfg, start=3)
  resumed = _take(it, 4)
  for x, y in zip(full[3:], resumed):
    np.testing.assert_array_equal(x, y)
  assert it.batches_consumed == 7


def test_epochs_are_permutations_and_reshuffled():
  it = _train(_cfg(num_train_examples=20), b=5)
  order = np.concatenate([it.batch_indices(k) for k in range(8)])
  it.close()
  e0, e1 = order[:20], order[20:40]
  assert sorted(e0) == list(range(20)) and sorted(e1) == list(range(20))
  assert not np.array_equal(e0, e1)


def _assert_global_batches_match(cfg, g, num_batches, r=16, seed=0):
  """For P = 2 and 4: the per-process batches k (batch g / P), concatenated in process order,
  equal the one-process batch k with batch g (indices, crops and images); the processes' rows
  of one global batch are disjoint stream positions."""
  single = _train(cfg, r=r, b=g, seed=seed)
  n = single.examples_per_epoch
  want_idx = [single.batch_indices(k) for k in range(num_batches)]
  want_off = [single.crop_offsets_of_batch(k) for k in range(num_batches)]
  want = _take(single, num_batches)
  for pc in (2, 4):
    its = [_train(cfg, r=r, b=g // pc, seed=seed, pi=p, pc=pc) for p in range(pc)]
    assert all(it.global_batch_size == g and it.examples_per_epoch == n for it in its)
    for k in range(num_batches):
      np.testing.assert_array_equal(
        np.concatenate([it.batch_indices(k) for it in its]), want_idx[k]
      )
      if want_off[k] is not None:
        np.testing.assert_array_equal(
          np.concatenate([it.crop_offsets_of_batch(k) for it in its]), want_off[k]
        )
      # (epoch, example) of each row: no row of global batch k is taken by two processes.
      rows = [set(zip(*it._maker.plan(k))) for it in its]
      assert sum(len(x) for x in rows) == g and len(set.union(*rows)) == g
      if (k * g) // n == ((k + 1) * g - 1) // n:  # Within one epoch: disjoint examples too.
        assert len(set(want_idx[k])) == g
    got = [_take(it, num_batches) for it in its]
    for k in range(num_batches):
      np.testing.assert_array_equal(np.concatenate([x[k] for x in got]), want[k])
  return n


def test_multi_process_global_batches_equal_single_process():
  # N = 20, G = 8: global batches 2 (positions 16..23) and 7 (56..63) straddle epochs.
  n = _assert_global_batches_match(_cfg(num_train_examples=20), g=8, num_batches=8, seed=3)
  assert n == 20
  # Resuming a 2-process run at a straddling batch continues the same global stream.
  cfg = _cfg(num_train_examples=20)
  want = _take(_train(cfg, b=8, start=7), 1)[0]
  got = [_take(_train(cfg, b=4, pi=p, pc=2, start=7), 1)[0] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(got), want)


def test_multi_process_folder_with_bad_files_equals_single_process(tmp_path):
  # 6 good files (trunc.png fails only when decoded, on whichever process meets it first): the
  # replacement of a bad file does not depend on the process either.
  root = str(tmp_path / "bad")
  _folder_with_bad_files(root)
  _assert_global_batches_match(_cfg(name="folder", path=root), g=4, num_batches=4)


def test_no_random_crop_is_plain_resize():
  it = _train(_cfg(num_train_examples=12, random_crop=False), b=4)
  assert it.crop_offsets_of_batch(0) is None
  idx = it.batch_indices(0)
  batch = next(it)["image"]
  it.close()
  for j, g in enumerate(idx):
    img, _ = synthetic.render_example("train", int(g), 16, seed=0)
    np.testing.assert_array_equal(batch[j], transforms.to_float(np.asarray(img)))


def test_synthetic_batch_equals_manual_transform():
  it = _train(_cfg(num_train_examples=12), r=32, b=4, seed=5)
  idx, off = it.batch_indices(2), it.crop_offsets_of_batch(2)
  for _ in range(2):
    next(it)
  batch = next(it)["image"]
  it.close()
  for j, g in enumerate(idx):
    img, _ = synthetic.render_example("train", int(g), 32, seed=0)
    want = transforms.resize_square(np.asarray(img), 36)[
      off[j, 0] : off[j, 0] + 32, off[j, 1] : off[j, 1] + 32
    ]
    np.testing.assert_array_equal(batch[j], transforms.to_float(want))


def test_small_stage_renders_at_16_then_resizes():
  batch = _take(_train(_cfg(num_train_examples=8), r=8, b=4), 1)[0]
  assert batch.shape == (4, 8, 8, 3)
  # Process index and count default to JAX's.
  it = train_input.train_iterator(_cfg(num_train_examples=8), resolution=8, batch_size=4, seed=0)
  np.testing.assert_array_equal(next(it)["image"], batch)
  it.close()


def test_iterator_close_stops_thread():
  before = threading.active_count()
  it = _train(_cfg(num_train_examples=8), b=2)
  next(it)
  it.close()
  del it
  for _ in range(50):
    if threading.active_count() <= before:
      break
    threading.Event().wait(0.05)
  assert threading.active_count() <= before


# --------------------------------------------------------------------------------------------
# Evaluation.


def test_synthetic_eval_masks_binary_aligned_and_padded():
  ev = eval_input.eval_dataset(_cfg(), resolution=16, batch_size=4, max_examples=10)
  assert len(ev) == 3 and ev.num_examples == 10
  batches = list(ev)
  assert len(batches) == 3
  last = batches[-1]
  np.testing.assert_array_equal(last["valid"], [True, True, False, False])
  np.testing.assert_array_equal(last["index"], [8, 9, -1, -1])
  assert np.all(last["mask"][2:] == 0) and np.all(last["image"][2:] == -1.0)
  for batch in batches:
    assert batch["image"].shape == (4, 16, 16, 3) and batch["mask"].shape == (4, 16, 16)
    assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
    for j, i in enumerate(batch["index"]):
      if i < 0:
        continue
      img, mask = synthetic.render_example("test", int(i), 16, seed=0)
      np.testing.assert_array_equal(batch["mask"][j], np.asarray(mask, np.float32))
      np.testing.assert_array_equal(batch["image"][j], transforms.to_float(np.asarray(img)))
  full = eval_input.eval_dataset(_cfg(), resolution=16, batch_size=500)
  assert full.num_examples == 1000
  full.close()


def _square_scene(h, w, box):
  """A dark image with a bright box and the matching mask."""
  img = np.full((h, w, 3), 30, np.uint8)
  mask = np.zeros((h, w), np.uint8)
  y0, y1, x0, x1 = box
  img[y0:y1, x0:x1] = 230
  mask[y0:y1, x0:x1] = 255
  return img, mask


def _mixed_folder(root):
  """images/ in six encodings and masks/ in several kinds, one deliberately of another size."""
  os.makedirs(os.path.join(root, "images"))
  os.makedirs(os.path.join(root, "masks"))
  img, mask = _square_scene(48, 64, (8, 40, 16, 48))
  im = Image.fromarray(img)
  saves = {
    "a_rgb.jpg": lambda p: im.save(p, quality=95),
    "b_rgba.png": lambda p: Image.fromarray(
      np.concatenate([img, np.full((48, 64, 1), 255, np.uint8)], -1), "RGBA"
    ).save(p),
    "c_grey.png": lambda p: im.convert("L").save(p),
    "d_16bit.png": lambda p: Image.fromarray(img[..., 0].astype(np.uint16) * 257).save(p),
    "e_lossy.webp": lambda p: im.save(p, quality=90),
    "f_cmyk.jpg": lambda p: im.convert("CMYK").save(p, quality=95),
  }
  for name, save in saves.items():
    save(os.path.join(root, "images", name))
    stem = os.path.splitext(name)[0]
    mpath = os.path.join(root, "masks", stem + ".png")
    if stem == "c_grey":  # Palette 0/1 label mask.
      Image.fromarray((mask > 0).astype(np.uint8)).convert("P").save(mpath)
    elif stem == "d_16bit":  # Mask at twice the image size.
      Image.fromarray(mask).resize((128, 96), Image.Resampling.NEAREST).save(mpath)
    else:
      Image.fromarray(mask).save(mpath)
  return mask


def test_folder_eval_mixed_formats_masks_aligned(tmp_path):
  root = str(tmp_path / "data")
  mask = _mixed_folder(root)
  ev = eval_input.eval_dataset(_cfg(name="folder", path=root), resolution=16, batch_size=4)
  batches = list(ev)
  assert ev.num_examples == 6 and len(batches) == 2
  want = (transforms.resize_mask(mask / 255.0, 16) > 0.5).astype(np.float32)
  for batch in batches:
    for j in range(4):
      if not batch["valid"][j]:
        continue
      np.testing.assert_array_equal(batch["mask"][j], want)  # Same mask whatever the format.
      bright = batch["image"][j].mean(-1) > 0
      assert (bright == (want > 0)).mean() > 0.95  # Image and mask aligned.
  assert ev.skipped_files == []


def test_folder_train_mixed_formats_matches_manual(tmp_path):
  root = str(tmp_path / "data")
  _mixed_folder(root)
  cfg = _cfg(name="folder", path=root)
  it = _train(cfg, r=16, b=4, seed=3)
  files = image_io.list_images(os.path.join(root, "images"))
  idx, off = it.batch_indices(1), it.crop_offsets_of_batch(1)
  next(it)
  batch = next(it)["image"]
  it.close()
  for j, g in enumerate(idx):
    resized = transforms.resize_square(image_io.load_image(files[g]), 18)
    want = resized[off[j, 0] : off[j, 0] + 16, off[j, 1] : off[j, 1] + 16]
    np.testing.assert_array_equal(batch[j], transforms.to_float(want))


def _folder_with_bad_files(root):
  os.makedirs(os.path.join(root, "images"))
  rng = np.random.default_rng(0)
  for i in range(5):
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
      os.path.join(root, "images", f"ok{i}.png")
    )
  open(os.path.join(root, "images", "zero.jpg"), "wb").close()
  with open(os.path.join(root, "images", "corrupt.png"), "wb") as f:
    f.write(b"\x89PNG not really")
  big = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
  path = os.path.join(root, "images", "trunc.png")
  Image.fromarray(big).save(path)
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])


def test_bad_files_skip_policy(tmp_path):
  root = str(tmp_path / "bad")
  _folder_with_bad_files(root)
  it = _train(_cfg(name="folder", path=root, on_bad_file="skip"), r=16, b=8)
  assert it.examples_per_epoch == 6  # zero.jpg and corrupt.png left out up front.
  for _ in range(3):  # trunc.png fails when decoded: replaced, listed.
    assert next(it)["image"].shape == (8, 16, 16, 3)
  names = sorted(os.path.basename(p) for p in it.skipped_files)
  it.close()
  assert names == ["corrupt.png", "trunc.png", "zero.jpg"]


def test_bad_files_error_policy(tmp_path):
  root = str(tmp_path / "bad")
  _folder_with_bad_files(root)
  with pytest.raises(DataError, match=r"corrupt\.png.*on_bad_file='skip'"):
    _train(_cfg(name="folder", path=root, on_bad_file="error"))
  os.remove(os.path.join(root, "images", "corrupt.png"))
  with pytest.raises(DataError, match=r"zero\.jpg.*empty"):
    _train(_cfg(name="folder", path=root, on_bad_file="error"))
  os.remove(os.path.join(root, "images", "zero.jpg"))
  it = _train(_cfg(name="folder", path=root, on_bad_file="error"), b=6)  # All 6 each batch.
  with pytest.raises(DataError, match=r"trunc\.png.*truncated"):
    next(it)
  it.close()


def test_eval_bad_file_becomes_invalid_slot(tmp_path):
  root = str(tmp_path / "data")
  _mixed_folder(root)
  img_path = os.path.join(root, "images", "b_rgba.png")
  data = open(img_path, "rb").read()
  with open(img_path, "wb") as f:
    f.write(data[: len(data) // 2])
  ev = eval_input.eval_dataset(_cfg(name="folder", path=root), resolution=16, batch_size=8)
  batch = next(ev)
  np.testing.assert_array_equal(batch["valid"], [1, 0, 1, 1, 1, 1, 0, 0])
  assert [os.path.basename(p) for p in ev.skipped_files] == ["b_rgba.png"]


def test_config_errors(tmp_path):
  with pytest.raises(ValueError, match="Unknown dataset name 'imagenet'.*synthetic"):
    data_config.validate_data_config(_cfg(name="imagenet"))
  with pytest.raises(ValueError, match="no path"):
    data_config.validate_data_config(_cfg(name="folder"))
  with pytest.raises(DataError, match="nowhere.*no such folder"):
    data_config.validate_data_config(_cfg(name="folder", path=str(tmp_path / "nowhere")))
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty.*no image files"):
    _train(_cfg(name="folder", path=str(tmp_path / "empty")))
  with pytest.raises(ValueError, match="on_bad_file"):
    data_config.validate_data_config(_cfg(on_bad_file="ignore"))
  with pytest.raises(ValueError, match="num_train_examples"):
    data_config.validate_data_config(_cfg(num_train_examples=0))
  with pytest.raises(ValueError, match="exceeds the synthetic train split"):
    _train(_cfg(num_train_examples=10**9))
  with pytest.raises(ValueError, match="org_to_crop"):
    data_config.validate_data_config(_cfg(org_to_crop=0.5))
  with pytest.raises(ValueError, match="cub_test_ids_path is only used"):
    data_config.validate_data_config(_cfg(cub_test_ids_path="x.txt"))
  with pytest.raises(ValueError, match="no ground-truth masks.*with_masks=False"):
    eval_input.eval_dataset(_cfg(name="lsun/car"), resolution=16, batch_size=2)
  with pytest.raises(ValueError, match="process_index"):
    _train(_cfg(), pi=2, pc=2)


def test_folder_eval_mask_without_image(tmp_path):
  root = str(tmp_path / "data")
  _mixed_folder(root)
  Image.fromarray(np.zeros((4, 4), np.uint8)).save(os.path.join(root, "masks", "ghost.png"))
  with pytest.raises(DataError, match="no image of the same name.*ghost.png"):
    eval_input.eval_dataset(_cfg(name="folder", path=root), resolution=16, batch_size=4)


# --------------------------------------------------------------------------------------------
# tfds, with tfds.testing.mock_data (offline; random image sizes; split slicing is ignored by
# the mock, so the reader's own sharding path is the one exercised).


@pytest.fixture()
def mock_tfds():
  with tfds.testing.mock_data(num_examples=12):
    yield
  train_input.clear_caches()


def test_tfds_lsun_train(mock_tfds):
  cfg = _cfg(name="lsun/car", num_train_examples=10)
  a = _take(_train(cfg, r=16, b=4), 4)  # 16 examples drawn from 10: crosses an epoch.
  b_full = _take(_train(cfg, r=16, b=4), 4)
  resumed = _take(_train(cfg, r=16, b=4, start=2), 2)
  for x, y in zip(a, b_full):
    assert x.shape == (4, 16, 16, 3) and -1 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x, y)
  for x, y in zip(a[2:], resumed):
    np.testing.assert_array_equal(x, y)
  # Two processes (each reading all 10 examples) feed the one-process global batch.
  single = _train(cfg, r=16, b=10)
  want_idx, want = single.batch_indices(1), _take(single, 2)[1]
  its = [_train(cfg, r=16, b=5, pi=p, pc=2, start=1) for p in range(2)]
  idx = [it.batch_indices(1) for it in its]
  assert set(idx[0]).isdisjoint(idx[1]) and set(idx[0]) | set(idx[1]) == set(range(10))
  np.testing.assert_array_equal(np.concatenate(idx), want_idx)
  np.testing.assert_array_equal(np.concatenate([_take(it, 1)[0] for it in its]), want)


def test_tfds_lsun_train_matches_manual_decode(mock_tfds):
  originals = [r["image"] for r in _raw_records("lsun/car", "train")]
  assert len({o.shape for o in originals}) > 1  # Mock images come in random sizes.
  it = _train(_cfg(name="lsun/car", num_train_examples=12), r=16, b=6, seed=2)
  idx, off = it.batch_indices(0), it.crop_offsets_of_batch(0)
  batch = next(it)["image"]
  it.close()
  for j, g in enumerate(idx):
    want = transforms.resize_square(originals[g], 18)[
      off[j, 0] : off[j, 0] + 16, off[j, 1] : off[j, 1] + 16
    ]
    np.testing.assert_array_equal(batch[j], transforms.to_float(want))
  # LSUN has no masks: images only, on request.
  ev = eval_input.eval_dataset(
    _cfg(name="lsun/car"), resolution=16, batch_size=8, split="train", with_masks=False
  )
  batch = next(ev)
  ev.close()
  assert "mask" not in batch and batch["valid"].all()
  np.testing.assert_array_equal(
    batch["image"][3], transforms.to_float(transforms.resize_square(originals[3], 16))
  )


def _raw_records(name, split="test"):
  """The encoded examples, read as the pipeline reads them. (Mock data depends on the features
  and decoders requested, so a plain tfds.load would give other random examples.)"""
  features = {
    "lsun/car": ["image"],
    "caltech_birds2011": ["image", "image/filename", "segmentation_mask"],
    "oxford_iiit_pet": ["image", "file_name", "segmentation_mask"],
  }[name]
  records = tfds_sources._tfds_records(_cfg(name=name), split, features)
  for r in records:
    r["image"] = image_io.decode_image(r["image"])
    if "segmentation_mask" in r:
      r["segmentation_mask"] = np.asarray(Image.open(io.BytesIO(r["segmentation_mask"])))
  return records


def test_tfds_cub_eval(mock_tfds):
  ev = eval_input.eval_dataset(_cfg(name="caltech_birds2011"), resolution=16, batch_size=5)
  batches = list(ev)
  assert ev.num_examples == 12 and len(batches) == 3
  raw = _raw_records("caltech_birds2011")
  for batch in batches:
    assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
    for j, i in enumerate(batch["index"]):
      if i < 0:
        assert not batch["valid"][j]
        continue
      m = raw[i]["segmentation_mask"] / 255.0
      np.testing.assert_array_equal(batch["mask"][j], transforms.resize_mask(m, 16) > 0.5)
      np.testing.assert_array_equal(
        batch["image"][j], transforms.to_float(transforms.resize_square(raw[i]["image"], 16))
      )
  assert batches[-1]["valid"].sum() == 2
  short = eval_input.eval_dataset(
    _cfg(name="caltech_birds2011"), resolution=16, batch_size=4, max_examples=3
  )
  assert short.num_examples == 3


def test_tfds_cub_redo_test_ids(mock_tfds, tmp_path):
  raw = _raw_records("caltech_birds2011")
  names = [r["image/filename"].decode() for r in raw]
  chosen = [names[7], names[2], names[4]]
  ids_file = tmp_path / "test_names.txt"
  ids_file.write_text("".join(f"001.Some_bird/{n}.jpg\n" for n in chosen))
  cfg = _cfg(name="caltech_birds2011", cub_test_ids_path=str(ids_file))
  batch = next(eval_input.eval_dataset(cfg, resolution=16, batch_size=4))
  np.testing.assert_array_equal(batch["valid"], [1, 1, 1, 0])
  for j, k in enumerate([7, 2, 4]):  # In the file's order.
    np.testing.assert_array_equal(
      batch["image"][j], transforms.to_float(transforms.resize_square(raw[k]["image"], 16))
    )
  # Training holds the test images out. (Under the mock, 'train+test' gives 12 examples, whose
  # random content depends on the features read: training reads no masks.)
  train_names = [
    r["image/filename"].decode()
    for r in tfds_sources._tfds_records(cfg, "train+test", ["image", "image/filename"])
  ]
  ids_file.write_text("".join(f"{n}.jpg\n" for n in train_names[:3]))
  it = _train(cfg, r=16, b=4)
  assert it.examples_per_epoch == 12 - 3
  it.close()
  # ReDO's own file format: '<id> <split>', 2 = test, with CUB's images.txt.
  redo = tmp_path / "train_val_test_split.txt"
  redo.write_text("1 0\n2 2\n3 1\n4 2\n")
  images_txt = tmp_path / "images.txt"
  images_txt.write_text("".join(f"{i} 00{i}.X/{n}.jpg\n" for i, n in enumerate(names[:4], 1)))
  assert tfds_sources.read_cub_test_names(str(redo), str(images_txt)) == [
    names[1].strip(),
    names[3].strip(),
  ]
  with pytest.raises(DataError, match="cub_images_txt_path"):
    tfds_sources.read_cub_test_names(str(redo))
  ids_file.write_text("not_a_bird.jpg\n")
  with pytest.raises(DataError, match="not in tfds.*not_a_bird"):
    eval_input.eval_dataset(cfg, resolution=16, batch_size=4)


def test_tfds_pets_trimap_foreground(mock_tfds):
  ev = eval_input.eval_dataset(_cfg(name="oxford_iiit_pet"), resolution=8, batch_size=12)
  batch = next(ev)
  raw = _raw_records("oxford_iiit_pet")
  for i in range(12):
    fg = (raw[i]["segmentation_mask"] == 1).astype(np.float32)
    np.testing.assert_array_equal(batch["mask"][i], transforms.resize_mask(fg, 8) > 0.5)


def test_tfds_known_split_size_reads_the_first_n_on_every_process(mock_tfds, monkeypatch):
  # With a prepared dataset tfds knows the split size and reads 'train[:N]' directly, on every
  # process (the mock ignores slicing, so only the requested split strings and index
  # bookkeeping are checked).
  monkeypatch.setattr(tfds_sources, "_split_size", lambda *a: 1000)
  requested = []
  real = tfds_sources._tfds_records

  def spy(cfg, split, features, **kw):
    requested.append(split)
    return real(cfg, split, features, **kw)

  monkeypatch.setattr(tfds_sources, "_tfds_records", spy)
  cfg = _cfg(name="lsun/car", num_train_examples=10)
  it = _train(cfg, r=16, b=5, pi=1, pc=2)
  assert requested == ["train[:10]"] and it.examples_per_epoch == 10
  single = _train(cfg, r=16, b=10)
  assert requested == ["train[:10]"]  # Cached: the same records for every process.
  np.testing.assert_array_equal(it.batch_indices(0), single.batch_indices(0)[5:])
  single.close()
  assert next(it)["image"].shape == (5, 16, 16, 3)
  it.close()
