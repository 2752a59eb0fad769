"""LSUN lmdb databases: one open environment per database and process, and the record count."""

from __future__ import annotations

import os
import threading
from typing import Any

from layered_gan_jax.errors import DataError

LMDB_WAYS = (
  "point --config.data.path at the folder holding LSUN's data.mdb (e.g. car_lmdb/ "
  "from LSUN's download), or use --config.data.name=lsun/car with a prepared tfds "
  "data_dir, or --config.data.name=folder with a folder of images"
)


_LMDB_ENVS: dict[str, Any] = {}  # lmdb allows one open environment per database and process.
_LMDB_LOCK = threading.Lock()


def open_lmdb(path: str):
  import lmdb  # pylint: disable=g-import-not-at-top

  key = os.path.realpath(path)
  with _LMDB_LOCK:
    if key not in _LMDB_ENVS:
      _LMDB_ENVS[key] = lmdb.open(
        path, readonly=True, lock=False, readahead=False, subdir=True, max_readers=512
      )
    return _LMDB_ENVS[key]


def lmdb_entries(path) -> int:
  """The number of records of the lmdb database in folder ``path``; a DataError (one line,
  with the ways to provide the data) when there is none or it is empty."""
  if not path:
    raise ValueError(f"data.name='lsun_lmdb' needs a path: {LMDB_WAYS}.")
  if "://" in str(path):  # lmdb memory-maps a local file: no object store can serve it.
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    raise DataError(
      f"{path}: an lmdb database must be a local folder (lmdb memory-maps "
      f"data.mdb); copy it first, e.g. `gsutil -m cp -r {path} /data/`, then "
      f"--config.data.path=/data/{name}."
    )
  if not os.path.isfile(os.path.join(path, "data.mdb")):
    raise DataError(f"{path}: no lmdb database there (no data.mdb); {LMDB_WAYS}.")
  entries = open_lmdb(path).stat()["entries"]
  if not entries:
    raise DataError(f"{path}: the lmdb database is empty; {LMDB_WAYS}.")
  return int(entries)
