"""LSUN's lmdb databases as a training source (data.name='lsun_lmdb')."""

import io
import os
import subprocess
import sys

import lmdb
import numpy as np
import pytest
from PIL import Image

from layered_gan_jax.data import config as data_config
from layered_gan_jax.data import sources, train_input
from layered_gan_jax.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _encode(array, fmt):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format=fmt)
  return buf.getvalue()


@pytest.fixture(scope="module")
def database(tmp_path_factory):
  """12 records written in shuffled key order: webp and jpeg values, one undecodable (key 05).
  Record k is a flat image of grey level 20 * k, so a batch tells which records it holds."""
  path = str(tmp_path_factory.mktemp("lmdb") / "car_lmdb")
  env = lmdb.open(path, map_size=1 << 24)
  rng = np.random.default_rng(0)
  with env.begin(write=True) as txn:
    for k in rng.permutation(12):
      value = (
        b"not an image"
        if k == 5
        else _encode(np.full((20, 24, 3), 20 * k, np.uint8), "WEBP" if k % 2 else "JPEG")
      )
      txn.put(f"{k:02d}".encode(), value)
  env.close()
  return path


def _cfg(path, **kw):
  return dict(
    name="lsun_lmdb",
    path=path,
    num_train_examples=kw.pop("n", None),
    random_crop=False,
    num_workers=2,
    **kw,
  )


def _levels(batch):
  """Each image's grey level / 20, i.e. the record number it came from."""
  return np.round((batch["image"].mean(axis=(1, 2, 3)) + 1) * 127.5 / 20).astype(int).tolist()


def test_first_n_keys_in_cursor_order_and_the_bad_value_skipped(database):
  source = sources.LmdbSource(database, 8)
  assert [k.decode() for k in source.keys] == [f"{k:02d}" for k in range(8)]
  it = train_input.train_iterator(
    _cfg(database, n=8), resolution=16, batch_size=8, seed=3, process_index=0, process_count=1
  )
  levels = sorted(_levels(next(it)))
  it.close()
  # Record 05 cannot be decoded: replaced by the next loadable one (06), and counted.
  assert levels == [0, 1, 2, 3, 4, 6, 6, 7]
  assert it.skipped_files and "key 05" in it.skipped_files[0]


def test_deterministic_resumable_and_per_process_rows(database):
  cfg = _cfg(database)

  def batches(start, count, **kw):
    it = train_input.train_iterator(cfg, resolution=16, seed=1, start_index=start, **kw)
    out = [_levels(next(it)) for _ in range(count)]
    it.close()
    return out

  full = batches(0, 4, batch_size=4, process_index=0, process_count=1)
  assert full == batches(0, 4, batch_size=4, process_index=0, process_count=1)
  assert batches(2, 2, batch_size=4, process_index=0, process_count=1) == full[2:]
  p0 = batches(0, 4, batch_size=2, process_index=0, process_count=2)
  p1 = batches(0, 4, batch_size=2, process_index=1, process_count=2)
  assert [a + b for a, b in zip(p0, p1)] == full
  assert len({tuple(sorted(r)) for r in full[:3]}) > 1  # The batches do differ.


@pytest.mark.slow
def test_missing_or_empty_database_is_a_one_line_error(tmp_path):
  with pytest.raises(DataError, match="no lmdb database there.*data.path at the folder"):
    data_config.validate_data_config(_cfg(str(tmp_path / "nope")))
  empty = str(tmp_path / "empty")
  lmdb.open(empty, map_size=1 << 20).close()
  with pytest.raises(DataError, match="the lmdb database is empty"):
    data_config.validate_data_config(_cfg(empty))
  result = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, "main.py"),
      "--config=configs/tiny.py",
      f"--workdir={tmp_path / 'run'}",
      "--config.data.name=lsun_lmdb",
      f"--config.data.path={empty}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and "the lmdb database is empty" in errors[0]
  assert not os.path.exists(tmp_path / "run")  # Nothing compiled, nothing written.


def test_unprepared_tfds_dataset_is_found_before_anything_starts(tmp_path):
  from configs import car  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

  config = car.get_config()
  config.data.data_dir = str(tmp_path)
  with pytest.raises(DataError) as e:
    validate.validate_config(config, "train")
  message = str(e.value)
  assert "tfds dataset 'lsun/car' is not prepared in" in message and "\n" not in message
  assert "tfds build lsun/car" in message and "lsun_lmdb" in message and "folder" in message
  config.data.download = True  # Will be downloaded: not refused up front.
  validate.validate_config(config, "train")


def test_an_object_store_path_is_refused_with_how_to_copy_it():
  """lmdb memory-maps a local file: a gs:// path is refused in one line that says how to make a
  local copy, before lmdb (which would create a local 'gs:' folder) is opened."""
  with pytest.raises(DataError) as e:
    data_config.validate_data_config(_cfg("gs://bucket/lsun/car_lmdb/"))
  message = str(e.value)
  assert "\n" not in message and "must be a local folder" in message
  assert "`gsutil -m cp -r gs://bucket/lsun/car_lmdb/ /data/`" in message
  assert message.endswith("--config.data.path=/data/car_lmdb.")
  assert not os.path.exists("gs:")
