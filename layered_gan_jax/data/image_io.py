"""Robust reading of image and mask files (PIL), and listing of image folders.

Everything a user's folder can contain ends up as one of two arrays:

* images: ``uint8 [H, W, 3]`` RGB, via :func:`load_image` / :func:`decode_image`;
* masks: ``float32 [H, W]`` in ``[0, 1]``, via :func:`load_mask` / :func:`decode_mask`.

Image modes (PIL) and how they become RGB:

* ``RGB``: as is. ``L`` / ``1``: grey replicated to 3 channels.
* ``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La`` and palette (``P``) images with a transparency
  entry: **composited over black**, ``rgb * alpha / 255`` (rounded). Transparent pixels
  therefore read as black, whatever colour the file stores under them.
* ``P`` without transparency, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's conversion to RGB.
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``, and ``I`` when it comes from a PNG or holds
  values above 255): scaled to 8 bits with ``round(v * 255 / 65535)``. Other ``I`` images whose
  values all fit in ``[0, 255]`` are read as 8-bit values. ``F`` (float) images: values in
  ``[0, 1]`` are scaled by 255, others are clipped to ``[0, 255]``.
* 16-bit-per-channel RGB PNGs are reduced to 8 bits by PIL itself while decoding.
* Multi-frame files (GIF, animated WebP, multi-page TIFF): the first frame.
* EXIF orientation is NOT applied: pixels are used in stored order (as torchvision/PIL
  pipelines do, and as mask annotations of the same files usually assume).

Masks: see :func:`mask_to_float`.

Bad files (zero bytes, not an image, truncated, corrupt) raise :class:`DataError`, a
``ValueError`` whose message names the file and says what to do. Code that walks many files
takes ``on_bad_file in {'skip', 'error'}``: ``'skip'`` logs every skipped file by name (absl
logging) and returns the list of skipped files.
"""

from __future__ import annotations

import io
import os
from typing import NamedTuple, Sequence

import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from layered_gan_jax.errors import DataError
from layered_gan_jax.files import is_uri

# Extensions (lower case) that are considered image files when listing a folder.
IMAGE_EXTENSIONS = (
  ".jpg",
  ".jpeg",
  ".png",
  ".webp",
  ".bmp",
  ".gif",
  ".tif",
  ".tiff",
  ".ppm",
  ".pgm",
  ".pbm",
)
ON_BAD_FILE_CHOICES = ("skip", "error")

_BAD_FILE_HINT = (
  "Delete or replace the file, or set the data config's on_bad_file='skip' to leave it out."
)


def check_on_bad_file(on_bad_file: str) -> str:
  if on_bad_file not in ON_BAD_FILE_CHOICES:
    raise ValueError(f"on_bad_file must be one of {ON_BAD_FILE_CHOICES}, got {on_bad_file!r}.")
  return on_bad_file


# ---------------------------------------------------------------------------------------------
# Decoding.


def _file_size(path: str) -> int:
  return epath.Path(path).stat().length if is_uri(path) else os.path.getsize(path)


def _open(data: bytes | None, name: str) -> Image.Image:
  """Opens and fully decodes an image (from ``data`` if given, else from the file ``name``)."""
  try:
    if data is None and is_uri(name):
      data = epath.Path(name).read_bytes()
    if data is None:
      if os.path.getsize(name) == 0:
        raise DataError(f"{name}: the file is empty (0 bytes). {_BAD_FILE_HINT}")
      img = Image.open(name)
    else:
      if len(data) == 0:
        raise DataError(f"{name}: the encoded image is empty (0 bytes). {_BAD_FILE_HINT}")
      img = Image.open(io.BytesIO(data))
    img.load()  # Decodes now, so that truncated or corrupt data fails here.
    return img
  except DataError:
    raise
  except FileNotFoundError as e:
    raise DataError(f"{name}: no such file. Check the path, or list the folder again.") from e
  except Image.DecompressionBombError as e:
    raise DataError(
      f"{name}: image too large to decode safely ({e}). Resize it first, or "
      f"raise PIL.Image.MAX_IMAGE_PIXELS. {_BAD_FILE_HINT}"
    ) from e
  except Image.UnidentifiedImageError as e:
    raise DataError(
      f"{name}: not a readable image (unknown format or corrupt header). {_BAD_FILE_HINT}"
    ) from e
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    # PIL reports truncated and corrupt data as OSError ("image file is truncated", "broken
    # data stream"), and sometimes SyntaxError / ValueError / EOFError from format plugins.
    raise DataError(
      f"{name}: the image data is truncated or corrupt ({e}). {_BAD_FILE_HINT}"
    ) from e


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
  v = np.clip(values.astype(np.int64), 0, 65535)
  return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _single_channel_uint8(img: Image.Image) -> np.ndarray | None:
  """uint8 [H, W] for the high-bit-depth single-channel modes; None for other modes."""
  mode = img.mode
  if mode.startswith("I;16"):
    return _sixteen_bit_to_uint8(np.asarray(img))
  if mode == "I":
    v = np.asarray(img)
    if img.format == "PNG" or (v.size and v.max() > 255):
      return _sixteen_bit_to_uint8(v)
    return np.clip(v, 0, 255).astype(np.uint8)
  if mode == "F":
    v = np.nan_to_num(np.asarray(img, dtype=np.float32))
    if v.size and v.min() >= 0.0 and v.max() <= 1.0:
      v = v * 255.0
    return np.clip(np.round(v), 0, 255).astype(np.uint8)
  return None


def pil_to_rgb(img: Image.Image, name: str = "<image>") -> np.ndarray:
  """Converts a decoded PIL image of any mode to ``uint8 [H, W, 3]`` (see module doc)."""
  grey = _single_channel_uint8(img)
  if grey is not None:
    return np.repeat(grey[:, :, None], 3, axis=2)
  mode = img.mode
  if mode == "RGB":
    return np.asarray(img, dtype=np.uint8)
  if mode in ("L", "1"):
    g = np.asarray(img.convert("L"), dtype=np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)
  has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
    mode == "P" and "transparency" in img.info
  )
  try:
    if has_alpha:
      rgba = np.asarray(img.convert("RGBA"), dtype=np.uint16)
      rgb = (rgba[:, :, :3] * rgba[:, :, 3:4] + 127) // 255  # Composite over black.
      return rgb.astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
  except (ValueError, OSError) as e:
    raise DataError(
      f"{name}: cannot convert image mode {mode!r} to RGB ({e}). Convert the "
      f"file to an RGB PNG or JPEG. {_BAD_FILE_HINT}"
    ) from e


def load_image(path: str) -> np.ndarray:
  """Reads an image file as ``uint8 [H, W, 3]`` RGB. Raises :class:`DataError` if unusable."""
  return pil_to_rgb(_open(None, path), path)


def decode_image(data: bytes, name: str = "<encoded image>") -> np.ndarray:
  """Decodes encoded image bytes (JPEG, PNG, ...) as ``uint8 [H, W, 3]`` RGB."""
  return pil_to_rgb(_open(data, name), name)


def mask_to_float(img: Image.Image, name: str = "<mask>") -> np.ndarray:
  """Converts a decoded mask image to ``float32 [H, W]`` in ``[0, 1]``.

  * ``1``: 0/1. 16-bit and float modes: as for images, then divided by 255.
  * ``L`` and ``P``: the stored integer values. If their maximum is 1 (label masks saved as
    0/1, e.g. palette index masks) they are used as is; otherwise they are divided by 255.
    (Palette colours are ignored: palette masks store class indices.)
  * Colour masks (``RGB``, ``RGBA``, ``LA``, ...): PIL's luma of the colour channels, divided by
    255; alpha is ignored. A pure-colour mask (e.g. red = object) therefore reads as < 1;
    convert such masks to greyscale first.
  Callers binarize at 0.5 after resizing.
  """
  if img.mode == "1":
    return np.asarray(img, dtype=np.float32)
  grey = _single_channel_uint8(img)
  if grey is not None:
    return grey.astype(np.float32) / 255.0
  if img.mode in ("L", "P"):
    v = np.asarray(img)
  else:
    try:
      base = img.convert("RGBA").convert("RGB") if "A" in img.mode or img.mode == "P" else img
      v = np.asarray(base.convert("L"))
    except (ValueError, OSError) as e:
      raise DataError(
        f"{name}: cannot read mask of mode {img.mode!r} ({e}). Save masks as "
        f"8-bit greyscale PNGs (0 = background, 255 = object)."
      ) from e
  v = v.astype(np.float32)
  if v.size and v.max() <= 1.0:
    return v
  return v / 255.0


def load_mask(path: str) -> np.ndarray:
  """Reads a mask file as ``float32 [H, W]`` in ``[0, 1]`` (see :func:`mask_to_float`)."""
  return mask_to_float(_open(None, path), path)


def decode_mask(data: bytes, name: str = "<encoded mask>") -> np.ndarray:
  return mask_to_float(_open(data, name), name)


# ---------------------------------------------------------------------------------------------
# Listing.


def is_image_file(path: str) -> bool:
  base = os.path.basename(path)
  return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def list_images(path: str, recursive: bool = True) -> list[str]:
  """Lists the image files under ``path``, sorted by relative path (deterministic).

  Files are recognised by extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and
  folders (names starting with '.') are ignored; symbolic links are followed. A path naming a
  single image file gives a one-element list. Raises :class:`DataError` if ``path`` does not
  exist or holds no image file.
  """
  path = os.fspath(path)
  if is_uri(path):
    return _list_images_uri(path, recursive)
  if not os.path.exists(path):
    raise DataError(
      f"{path}: no such file or folder. Check the data config's path (it must "
      f"point to a folder of images, or to a root with images/ and masks/)."
    )
  if os.path.isfile(path):
    if is_image_file(path):
      return [path]
    raise DataError(
      f"{path} is a file but not an image ({', '.join(IMAGE_EXTENSIONS)}). "
      f"Point the path at a folder of images."
    )
  found = []
  if recursive:
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      found.extend(
        os.path.join(dirpath, f)
        for f in filenames
        if is_image_file(f) and os.path.isfile(os.path.join(dirpath, f))
      )
  else:
    found = [
      os.path.join(path, f)
      for f in os.listdir(path)
      if is_image_file(f) and os.path.isfile(os.path.join(path, f))
    ]
  if not found:
    raise DataError(
      f"{path}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)}"
      f"{', recursively' if recursive else ''}). Put images there or fix the "
      f"data config's path."
    )
  return sorted(found, key=lambda p: os.path.relpath(p, path).split(os.sep))


def _list_images_uri(path: str, recursive: bool) -> list[str]:
  """:func:`list_images` for an object store, through ``etils.epath`` (no links to follow
  there; local folders keep ``os.walk``, which follows them)."""
  root = epath.Path(path)
  if not root.exists():
    raise DataError(f"{path}: no such file or folder. Check the data config's path.")
  if not root.is_dir():
    if is_image_file(path):
      return [path]
    raise DataError(f"{path} is a file but not an image ({', '.join(IMAGE_EXTENSIONS)}).")
  found = []
  walk = (
    root.walk() if recursive else [(root, [], [p.name for p in root.iterdir() if not p.is_dir()])]
  )
  scheme = os.fspath(root).split("://", 1)[0]
  for dirpath, dirnames, filenames in walk:
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    folder = os.fspath(dirpath)
    if not is_uri(folder):  # etils' fsspec backend walks without the scheme.
      folder = f"{scheme}://{folder.lstrip('/')}"
    found.extend(f"{folder.rstrip('/')}/{f}" for f in filenames if is_image_file(f))
  if not found:
    raise DataError(
      f"{path}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)}"
      f"{', recursively' if recursive else ''})."
    )
  prefix = os.fspath(root).rstrip("/") + "/"
  return sorted(found, key=lambda p: p[len(prefix) :].split("/"))


def _relative(path: str, root: str) -> str:
  if is_uri(root):
    return path[len(root.rstrip("/")) + 1 :]
  return os.path.relpath(path, root).replace(os.sep, "/")


def _stem_key(path: str, root: str) -> str:
  return os.path.splitext(_relative(path, root))[0]


def _index_by_stem(files: Sequence[str], root: str) -> dict[str, str]:
  index: dict[str, str] = {}
  for f in files:
    key = _stem_key(f, root)
    if key in index:
      raise DataError(
        f"{index[key]} and {f} have the same stem {key!r}, so masks cannot be "
        f"paired with images unambiguously. Rename or remove one of them."
      )
    index[key] = f
  return index


def _preview(names: Sequence[str], limit: int = 10) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class PairedFiles(NamedTuple):
  pairs: list[tuple[str, str]]  # (image path, mask path), sorted by image relative path.
  images_without_mask: list[str]  # Skipped images (only with on_missing_mask='skip').


def pair_images_and_masks(root: str, *, on_missing_mask: str = "error") -> PairedFiles:
  """Pairs ``root/images/**`` with ``root/masks/**`` by relative path without extension.

  ``images/a/x.jpg`` pairs with ``masks/a/x.png`` (any image extension on either side). A mask
  with no image is always an error (it usually means a misnamed file). An image with no mask
  is an error with ``on_missing_mask='error'``, or is left out, logged and listed in
  ``images_without_mask`` with ``on_missing_mask='skip'``.
  """
  if on_missing_mask not in ("error", "skip"):
    raise ValueError(f"on_missing_mask must be 'error' or 'skip', got {on_missing_mask!r}.")
  root = os.fspath(root)
  if not epath.Path(root).is_dir():
    raise DataError(
      f"{root}: no such folder. For evaluation the data config's path must be a "
      f"folder holding images/ and masks/ with matching file names."
    )
  image_dir, mask_dir = (os.fspath(epath.Path(root) / sub) for sub in ("images", "masks"))
  for d in (image_dir, mask_dir):
    if not epath.Path(d).is_dir():
      raise DataError(
        f"{d}: no such folder. Evaluation data needs {image_dir} and {mask_dir}, "
        f"with one mask per image of the same name (e.g. images/x.jpg and "
        f"masks/x.png)."
      )
  images = _index_by_stem(list_images(image_dir), image_dir)
  masks = _index_by_stem(list_images(mask_dir), mask_dir)
  orphans = sorted(masks[k] for k in masks if k not in images)
  if orphans:
    raise DataError(
      f"{len(orphans)} mask(s) in {mask_dir} have no image of the same name in "
      f"{image_dir}: {_preview(orphans)}. Rename them to match their image, "
      f"or remove them."
    )
  missing = [images[k] for k in images if k not in masks]
  if missing and on_missing_mask == "error":
    raise DataError(
      f"{len(missing)} image(s) in {image_dir} have no mask of the same name in "
      f"{mask_dir}: {_preview(missing)}. Add the masks, or set "
      f"on_missing_mask='skip' to evaluate only the images that have one."
    )
  if missing:
    logging.warning(
      "Skipping %d image(s) without a mask in %s: %s", len(missing), mask_dir, _preview(missing, 50)
    )
  keys = sorted((k for k in images if k in masks), key=lambda k: k.split("/"))
  return PairedFiles([(images[k], masks[k]) for k in keys], sorted(missing))


def scan_files(paths: Sequence[str], on_bad_file: str = "skip") -> tuple[list[str], list[str]]:
  """Cheap up-front check of files: non-empty, and PIL recognises the header.

  Returns ``(good, skipped)``. With ``on_bad_file='error'`` the first bad file raises
  :class:`DataError`. Truncated image bodies are only found when decoding (the pipelines then
  apply the same policy).
  """
  check_on_bad_file(on_bad_file)
  good, skipped = [], []
  for p in paths:
    try:
      if _file_size(p) == 0:
        raise DataError(f"{p}: the file is empty (0 bytes). {_BAD_FILE_HINT}")
      try:
        with Image.open(io.BytesIO(epath.Path(p).read_bytes()) if is_uri(p) else p) as img:
          img.size  # pylint: disable=pointless-statement
      except Image.UnidentifiedImageError as e:
        raise DataError(
          f"{p}: not a readable image (unknown format or corrupt header). {_BAD_FILE_HINT}"
        ) from e
      except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{p}: the image header is corrupt ({e}). {_BAD_FILE_HINT}") from e
    except DataError as e:
      if on_bad_file == "error":
        raise
      logging.warning("Skipping bad file: %s", e)
      skipped.append(p)
      continue
    good.append(p)
  if skipped:
    logging.warning(
      "Skipped %d bad file(s) of %d: %s", len(skipped), len(paths), _preview(skipped, 50)
    )
  return good, skipped
