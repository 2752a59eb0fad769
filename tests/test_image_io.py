"""Tests for layered_gan_jax.data.image_io: every file a user's folder may hold, and its errors."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from layered_gan_jax.data import image_io
from layered_gan_jax.errors import DataError


def _gradient(h=12, w=16):
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([x * 15, y * 20, (x + y) * 7], -1).astype(np.uint8)


def _write(path, img: Image.Image, **kw):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img.save(path, **kw)
  return path


# --------------------------------------------------------------------------------------------
# Modes.


def test_rgb_png_and_bmp_are_exact(tmp_path):
  rgb = _gradient()
  for ext in ("png", "bmp"):
    p = _write(str(tmp_path / f"a.{ext}"), Image.fromarray(rgb))
    out = image_io.load_image(p)
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_and_lossless_webp(tmp_path):
  rgb = _gradient()
  p = _write(str(tmp_path / "a.jpg"), Image.fromarray(rgb), quality=95)
  assert np.abs(image_io.load_image(p).astype(int) - rgb).max() < 20
  p = _write(str(tmp_path / "a.webp"), Image.fromarray(rgb), lossless=True)
  np.testing.assert_array_equal(image_io.load_image(p), rgb)


def test_rgba_is_composited_over_black(tmp_path):
  rgba = np.zeros((2, 3, 4), np.uint8)
  rgba[..., :3] = 200
  rgba[..., 3] = [[0, 128, 255], [255, 255, 0]]
  p = _write(str(tmp_path / "a.png"), Image.fromarray(rgba, "RGBA"))
  out = image_io.load_image(p)
  np.testing.assert_array_equal(out[..., 0], [[0, 100, 200], [200, 200, 0]])
  # LA: grey plus alpha, same rule.
  la = Image.fromarray(rgba[..., [0, 3]], "LA")
  p = _write(str(tmp_path / "b.png"), la)
  np.testing.assert_array_equal(image_io.load_image(p)[..., 1], [[0, 100, 200], [200, 200, 0]])


def test_greyscale_palette_bilevel_cmyk(tmp_path):
  grey = _gradient()[..., 0]
  out = image_io.load_image(_write(str(tmp_path / "g.png"), Image.fromarray(grey, "L")))
  assert out.shape == (12, 16, 3)
  np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, -1))
  # Palette without transparency: the palette colours.
  pal = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
  out = image_io.load_image(_write(str(tmp_path / "p.png"), pal))
  np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
  # Palette with a transparent entry: composited over black like RGBA.
  pt = Image.new("P", (2, 1))
  pt.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
  pt.putpixel((0, 0), 0)
  pt.putpixel((1, 0), 1)
  pt.info["transparency"] = 0
  out = image_io.load_image(_write(str(tmp_path / "pt.png"), pt, transparency=0))
  np.testing.assert_array_equal(out[0], [[0, 0, 0], [0, 255, 0]])
  # Bilevel.
  bits = Image.fromarray(grey > 100).convert("1")
  out = image_io.load_image(_write(str(tmp_path / "b.png"), bits))
  assert set(np.unique(out)) <= {0, 255}
  # CMYK JPEG.
  cmyk = Image.fromarray(_gradient()).convert("CMYK")
  out = image_io.load_image(_write(str(tmp_path / "c.jpg"), cmyk, quality=95))
  assert out.shape == (12, 16, 3)
  assert np.abs(out.astype(int) - _gradient()).mean() < 12


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
  v = np.array([[0, 257, 32896, 65535]], np.uint16)
  p = _write(str(tmp_path / "g16.png"), Image.fromarray(v))
  assert Image.open(p).mode in ("I;16", "I")
  out = image_io.load_image(p)
  np.testing.assert_array_equal(out[..., 0], [[0, 1, 128, 255]])
  # 32-bit integer mode holding 16-bit values (older Pillow reads 16-bit PNGs as 'I').
  img_i = Image.fromarray(v.astype(np.int32), "I")
  np.testing.assert_array_equal(image_io.pil_to_rgb(img_i)[..., 0], [[0, 1, 128, 255]])
  # Float mode in [0, 1].
  img_f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
  np.testing.assert_array_equal(image_io.pil_to_rgb(img_f)[..., 0], [[0, 128, 255]])


def test_decode_image_from_bytes():
  import io

  buf = io.BytesIO()
  Image.fromarray(_gradient()).save(buf, format="PNG")
  np.testing.assert_array_equal(image_io.decode_image(buf.getvalue()), _gradient())
  with pytest.raises(DataError, match="empty"):
    image_io.decode_image(b"", "record 7")


# --------------------------------------------------------------------------------------------
# Bad files.


def test_zero_byte_file(tmp_path):
  p = tmp_path / "empty.jpg"
  p.write_bytes(b"")
  with pytest.raises(DataError) as e:
    image_io.load_image(str(p))
  assert str(p) in str(e.value) and "empty" in str(e.value) and "on_bad_file='skip'" in str(e.value)
  assert isinstance(e.value, ValueError)


def test_corrupt_and_truncated_files(tmp_path):
  bad = tmp_path / "noise.png"
  bad.write_bytes(b"this is not an image at all" * 10)
  with pytest.raises(DataError, match="noise.png.*not a readable image"):
    image_io.load_image(str(bad))
  good = _write(
    str(tmp_path / "full.png"),
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)),
  )
  data = open(good, "rb").read()
  trunc = tmp_path / "trunc.png"
  trunc.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataError, match="trunc.png.*truncated or corrupt"):
    image_io.load_image(str(trunc))
  with pytest.raises(DataError, match="no such file"):
    image_io.load_image(str(tmp_path / "missing.png"))


def test_scan_files_skip_and_error(tmp_path):
  good = _write(str(tmp_path / "a.png"), Image.fromarray(_gradient()))
  (tmp_path / "b.png").write_bytes(b"")
  (tmp_path / "c.jpg").write_bytes(b"garbage")
  files = [good, str(tmp_path / "b.png"), str(tmp_path / "c.jpg")]
  ok, skipped = image_io.scan_files(files, "skip")
  assert ok == [good] and skipped == files[1:]
  with pytest.raises(DataError, match="b.png"):
    image_io.scan_files(files, "error")
  with pytest.raises(ValueError, match="on_bad_file"):
    image_io.scan_files(files, "ignore")


# --------------------------------------------------------------------------------------------
# Masks.


def test_masks_of_every_kind():
  m = np.array([[0, 1], [1, 0]], np.uint8)
  np.testing.assert_array_equal(image_io.mask_to_float(Image.fromarray(m * 255)), m)
  np.testing.assert_array_equal(image_io.mask_to_float(Image.fromarray(m)), m)  # 0/1 labels.
  pal = Image.fromarray(m, "L").convert("P")
  np.testing.assert_array_equal(image_io.mask_to_float(pal), m)
  np.testing.assert_array_equal(image_io.mask_to_float(Image.fromarray(m.astype(bool))), m)
  m16 = Image.fromarray(m.astype(np.uint16) * 65535)
  np.testing.assert_array_equal(image_io.mask_to_float(m16), m)
  rgb = Image.fromarray(np.repeat(m[..., None] * 255, 3, -1))
  np.testing.assert_array_equal(image_io.mask_to_float(rgb), m)
  soft = image_io.mask_to_float(Image.fromarray(np.array([[0, 102, 204, 255]], np.uint8)))
  np.testing.assert_allclose(soft, [[0, 0.4, 0.8, 1.0]])


# --------------------------------------------------------------------------------------------
# Listing and pairing.


def test_list_images_sorted_recursive_and_errors(tmp_path):
  img = Image.fromarray(_gradient())
  for rel in ("b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.bmp", ".hidden.png", ".cache/e.png"):
    _write(str(tmp_path / rel), img)
  (tmp_path / "notes.txt").write_text("x")
  found = [os.path.relpath(p, tmp_path) for p in image_io.list_images(str(tmp_path))]
  assert found == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.bmp"]
  flat = [os.path.basename(p) for p in image_io.list_images(str(tmp_path), recursive=False)]
  assert flat == ["a.JPG", "b.png"]
  assert image_io.list_images(str(tmp_path / "b.png")) == [str(tmp_path / "b.png")]
  with pytest.raises(DataError, match="no such file or folder.*path"):
    image_io.list_images(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty.*no image files found"):
    image_io.list_images(str(tmp_path / "empty"))
  with pytest.raises(DataError, match="not an image"):
    image_io.list_images(str(tmp_path / "notes.txt"))


def _make_pairs(root, image_names, mask_names):
  img = Image.fromarray(_gradient())
  msk = Image.fromarray((_gradient()[..., 0] > 100).astype(np.uint8) * 255)
  for n in image_names:
    _write(os.path.join(root, "images", n), img)
  for n in mask_names:
    _write(os.path.join(root, "masks", n), msk)


def test_pair_images_and_masks(tmp_path):
  _make_pairs(str(tmp_path), ["x.jpg", "a/y.png", "z.webp"], ["x.png", "a/y.png", "z.png"])
  paired = image_io.pair_images_and_masks(str(tmp_path))
  rel = [(os.path.relpath(i, tmp_path), os.path.relpath(m, tmp_path)) for i, m in paired.pairs]
  assert rel == [
    ("images/a/y.png", "masks/a/y.png"),
    ("images/x.jpg", "masks/x.png"),
    ("images/z.webp", "masks/z.png"),
  ]
  assert paired.images_without_mask == []


def test_pairing_errors(tmp_path):
  root = str(tmp_path / "r1")
  _make_pairs(root, ["x.jpg"], ["x.png", "orphan.png"])
  with pytest.raises(DataError, match="no image of the same name.*orphan.png"):
    image_io.pair_images_and_masks(root)
  root = str(tmp_path / "r2")
  _make_pairs(root, ["x.jpg", "lonely.jpg"], ["x.png"])
  with pytest.raises(DataError, match="no mask.*lonely.jpg.*on_missing_mask='skip'"):
    image_io.pair_images_and_masks(root)
  paired = image_io.pair_images_and_masks(root, on_missing_mask="skip")
  assert len(paired.pairs) == 1
  assert [os.path.basename(p) for p in paired.images_without_mask] == ["lonely.jpg"]
  root = str(tmp_path / "r3")
  _make_pairs(root, ["x.jpg", "x.png"], ["x.png"])
  with pytest.raises(DataError, match="same stem"):
    image_io.pair_images_and_masks(root)
  root = str(tmp_path / "r4")
  _make_pairs(root, ["x.jpg"], [])
  with pytest.raises(DataError, match="masks: no such folder"):
    image_io.pair_images_and_masks(root)
  with pytest.raises(DataError, match="no such folder"):
    image_io.pair_images_and_masks(str(tmp_path / "missing"))


def test_data_on_an_object_store_through_epath(tmp_path):
  """Training and evaluation folders and the CUB list on ``ram://`` (tf.io.gfile's in-memory
  file system, the backend of gs://): listed, paired, checked and decoded through etils.epath,
  with nothing local created."""
  import sys  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/ram_path.py
  import ram_path  # noqa: F401  (registers ram:// with etils.epath)
  from etils import epath  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from layered_gan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  root = epath.Path("ram://data_on_store")
  for rel in ("images/b/2.png", "images/a.png", "masks/b/2.png", "masks/a.png", ".hidden.png"):
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 5), 200, np.uint8)).save(buf, format="PNG")
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(buf.getvalue())
  (root / "ids.txt").write_text("a.png\n")
  base = "ram://data_on_store"
  assert image_io.list_images(base + "/images") == [
    base + "/images/a.png",
    base + "/images/b/2.png",
  ]
  pairs = image_io.pair_images_and_masks(base)
  assert [os.path.basename(p) for p, _ in pairs.pairs] == ["a.png", "2.png"]
  assert image_io.load_image(base + "/images/a.png").shape == (6, 5, 3)
  assert image_io.load_mask(base + "/masks/b/2.png").shape == (6, 5)
  assert image_io.scan_files([base + "/images/a.png"]) == ([base + "/images/a.png"], [])
  data_config.validate_data_config({"name": "folder", "path": base})
  data_config.check_eval_data({"name": "folder", "path": base})
  with pytest.raises(DataError, match="ram://nope: no such folder"):
    data_config.validate_data_config({"name": "folder", "path": "ram://nope"})
  data_config.validate_data_config(
    {"name": "caltech_birds2011", "cub_test_ids_path": base + "/ids.txt"}
  )
  assert tfds_sources.read_cub_test_names(base + "/ids.txt") == ["a"]
  assert not os.path.exists("ram:") and not os.path.exists(tmp_path / "ram:")
