"""Paths under the workdir and files written whole or not at all, on a local disk or an object
store (``gs://``, ``s3://``): every path goes through ``etils.epath`` (as Orbax's do).

"Whole or not at all": on a local file system a temporary file next to the target, then a
rename (atomic), so a kill never leaves half a file where a reader looks. An object store has
no rename (gfile's is a copy and a delete), but an object is only created when its upload
completes: a single write of the whole content (one ``write_bytes``, closed once) is already
atomic there, and a kill leaves either the previous object or the new one. So the bytes are
made in memory first and written with one call (docs/reliability.md).
"""

import contextlib
import io
import json
import os
from typing import Any, Iterator

from etils import epath

from layered_gan_jax import errors


def is_uri(path) -> bool:
  """``gs://...``, ``s3://...`` or another scheme (not a local path)."""
  return "://" in os.fspath(path)


def resolve(path) -> epath.Path:
  """An ``epath.Path``: URIs as given, local paths made absolute (``~`` expanded)."""
  if is_uri(path):
    return epath.Path(path)
  return epath.Path(path).expanduser().absolute()


def join(*parts) -> str:
  """``os.path.join`` that keeps a URI's ``scheme://``."""
  return os.fspath(epath.Path(parts[0]).joinpath(*parts[1:]))


def write_bytes(path, data: bytes) -> None:
  """Writes ``data`` to ``path`` whole or not at all (see the module docstring); makes the
  folder. A failed write (disk full, no permission, ...) raises
  :class:`~layered_gan_jax.errors.WriteFailed`; the previous file, if any, is kept."""
  path = epath.Path(path)
  with errors.writing(f"the file {path.name}", os.fspath(path.parent)):
    _write_bytes(path, data)


def _write_bytes(path: epath.Path, data: bytes) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  if is_uri(path):
    path.write_bytes(data)  # One upload: the object appears complete, or not at all.
    return
  tmp = path.with_name(path.name + ".tmp")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
  """Yields a local temporary path next to ``path`` (``path + suffix``; makes the folder); when
  the block ends without an exception the file is renamed onto ``path``, otherwise removed.
  Local paths only (benchmark reports); under a workdir use :func:`write_bytes`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + suffix
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path, obj: Any, indent: int = 2) -> None:
  write_bytes(path, json.dumps(obj, indent=indent).encode())


def write_png(path, image) -> None:
  """A PIL image as a PNG, whole or not at all."""
  buf = io.BytesIO()
  image.save(buf, format="PNG")
  write_bytes(path, buf.getvalue())
