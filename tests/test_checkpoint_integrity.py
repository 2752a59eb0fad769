"""Checkpoints that prove they are intact (the checkpointer's checksums; layered_gan_jax/run/checksums.py).

Tiny pytrees through ``checkpoints.Checkpointer`` and ``loading.resume``, as
tests/test_reliability.py does: a flipped byte in the latest step's largest data file, every
step damaged, a checkpoint written before checksums existed, a failed write. Seconds.
"""

import errno
import logging
import os
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import tiny
from layered_gan_jax import errors
from layered_gan_jax.nets import build
from layered_gan_jax.run import checkpoints, checksums, layout
from layered_gan_jax.training import loading

ITEMS = ("state", "config", "meta")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree(value: float):
  """Random-looking floats (zstd cannot shrink them: the data file holds their bytes)."""
  rng = np.random.default_rng(int(value))
  return {
    "w": rng.standard_normal((64, 64)).astype(np.float32) + np.float32(value),
    "b": np.full((3,), value, np.float32),
    "n": np.asarray(int(value), np.int32),
  }


def _save(ckpt, step, value):
  ckpt.save(step, {"state": _tree(value), "config": {"a": 1}, "meta": {"step": step}})


def _written(d, steps=(1, 2, 3)):
  ckpt = checkpoints.Checkpointer(d, ITEMS)
  for step in steps:
    _save(ckpt, step, step)
  ckpt.close()


def _largest_file(step_dir: str) -> str:
  found = [os.path.join(root, name) for root, _, names in os.walk(step_dir) for name in names]
  return max(found, key=os.path.getsize)


def _flip(step_dir: str, offset_fraction: float = 0.5) -> str:
  """Flips every bit of one byte of the step's largest file (an OCDBT data file under
  ``state/d/``); returns its path."""
  path = _largest_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(int(os.path.getsize(path) * offset_fraction))
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  return path


def _restore_latest(ckpt):
  target = {"state": checkpoints.abstract_like(_tree(0))}
  return ckpt.restore_latest(lambda step: ckpt.restore(step, target)["state"])


def _warnings(caplog, needle):
  return [
    r.getMessage()
    for r in caplog.records
    if r.levelno == logging.WARNING and needle in r.getMessage()
  ]


# ------------------------------------------------------------------------------ the checksum


def test_every_flipped_bit_changes_the_checksum():
  """Arrays of each kind of dtype, every bit of each flipped in turn (a CRC-32 detects every
  burst of up to 32 bits), and the byte that differs between two arrays equal elsewhere."""
  for x in (
    np.arange(8, dtype=np.float32) / 3,
    np.arange(6, dtype=np.int8),
    np.arange(5, dtype=jnp.bfloat16),
    np.array([True, False, True]),
    jax.random.PRNGKey(3),
    jax.random.key(3),
  ):
    data = checksums._host(x).reshape(-1).view(np.uint8)  # pylint: disable=protected-access
    bits = np.unpackbits(data)
    variants = np.packbits(bits[None, :] ^ np.eye(bits.size, dtype=np.uint8), axis=1)
    original = checksums.crc32(x)
    sums = {f"{zlib.crc32(v.tobytes()):08x}" for v in variants}
    assert original not in sums and len(sums) == len(variants), x.dtype
  flipped = np.arange(4, dtype=np.float32)
  flipped.view(np.uint8)[5] ^= 0x10
  assert checksums.digests([np.arange(4, dtype=np.float32), flipped])[0] != checksums.crc32(flipped)


def test_checksum_is_fixed_and_independent_of_the_device_count():
  """zlib's CRC-32 of the bytes (the digits recorded here), in this process and in one with 4
  CPU devices where the array is replicated, and sharded over them."""
  expected = "25555811"
  x = np.arange(4096, dtype=np.float32) / 7
  assert f"{zlib.crc32(x.tobytes()):08x}" == expected
  assert checksums.digests([x, jnp.asarray(x)]) == [expected] * 2
  code = (
    "import jax, numpy as np\n"
    "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
    "from layered_gan_jax.run import checksums\n"
    "mesh = Mesh(np.array(jax.devices()), ('d',))\n"
    "x = np.arange(4096, dtype=np.float32) / 7\n"
    "r = jax.device_put(x, NamedSharding(mesh, P()))\n"
    "s = jax.device_put(x, NamedSharding(mesh, P('d')))\n"
    "print(jax.device_count(), *checksums.digests([r, s]))\n"
  )
  env = dict(
    os.environ,
    XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
    JAX_PLATFORMS="cpu",
  )
  out = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout.split()
  assert out == ["4", expected, expected]


# ------------------------------------------------------------------------------ damaged steps


def test_damaged_latest_step_is_skipped_with_one_warning_and_moved_aside_by_the_writer(
  tmp_path, caplog
):
  d = str(tmp_path / "ckpt")
  _written(d)
  assert os.sep + "d" + os.sep in _flip(os.path.join(d, "3"))  # An OCDBT data file.
  caplog.set_level(logging.INFO)

  reader = checkpoints.Checkpointer(d, ITEMS)
  assert reader.latest_step() == 3  # Not known to be damaged before a restore.
  step, state = _restore_latest(reader)
  assert step == 2
  np.testing.assert_array_equal(np.asarray(state["w"]), _tree(2)["w"])
  lines = _warnings(caplog, "damaged")
  assert len(lines) == 1, lines
  assert "step 3" in lines[0] and "'state'" in lines[0] and "falling back to step 2" in lines[0]
  assert "array ['w'] of item 'state' does not match the checksum" in lines[0]
  assert reader.all_steps() == [1, 2] and reader.damaged_steps() == [3]
  with pytest.raises(checkpoints.DamagedCheckpoint, match="step 3"):  # Asked for: refused.
    reader.restore(3, {"state": checkpoints.abstract_like(_tree(0))})
  reader.close()
  assert sorted(os.listdir(d)) == ["1", "2", "3"]  # Readers move nothing.

  writer = checkpoints.Checkpointer(d, ITEMS)
  items, step = loading.resume(writer, {"state": _tree(0)}, "test")
  assert step == 2
  _save(writer, 3, 33.0)  # The damaged step's number is saved again: no collision.
  assert sorted(os.listdir(d)) == ["1", "2", "3", "3" + checkpoints.DAMAGED_SUFFIX]
  assert any("Moving the damaged checkpoint step 3" in m for m in _warnings(caplog, "aside"))
  assert writer.all_steps() == [1, 2, 3]
  step, state = _restore_latest(writer)
  assert step == 3
  np.testing.assert_array_equal(np.asarray(state["b"]), [33.0] * 3)
  writer.close()
  del items


def test_every_step_damaged_is_a_config_error(tmp_path, caplog):
  """Step 2 with a flipped byte (its checksum differs), step 1 cut short (it cannot be read)."""
  d = str(tmp_path / "ckpt")
  _written(d, (1, 2))
  _flip(os.path.join(d, "2"))
  path = _largest_file(os.path.join(d, "1"))
  os.truncate(path, os.path.getsize(path) // 2)
  ckpt = checkpoints.Checkpointer(d, ITEMS)
  with pytest.raises(
    errors.ConfigError,
    match=r"no intact checkpoint .*step\(s\) 1, 2 are "
    r"damaged.*good copy",
  ) as info:
    loading.resume(ckpt, {"state": _tree(0)}, "test")
  assert "\n" not in str(info.value)
  lines = _warnings(caplog, "damaged")
  assert len(lines) == 2, lines
  assert "step 2" in lines[0] and "does not match the checksum" in lines[0]
  assert "step 1" in lines[1] and "cannot be read back" in lines[1] and "no earlier" in lines[1]
  ckpt.close()


def test_checkpoint_without_checksums_restores_with_one_warning(tmp_path, caplog):
  """Written as before this change: a plain Orbax manager with the old items, no checksums."""
  d = tmp_path / "old"
  manager = ocp.CheckpointManager(
    d,
    options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False),
    item_names=ITEMS,
  )
  for step in (1, 2):
    manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(_tree(step)),
        config=ocp.args.JsonSave({"a": 1}),
        meta=ocp.args.JsonSave({"step": step}),
      ),
    )
  manager.close()
  caplog.set_level(logging.INFO)
  ckpt = checkpoints.Checkpointer(str(d), ITEMS)
  step, state = _restore_latest(ckpt)
  assert step == 2
  np.testing.assert_array_equal(np.asarray(state["w"]), _tree(2)["w"])
  ckpt.restore(1, {"state": checkpoints.abstract_like(_tree(0))})
  assert len(_warnings(caplog, "restored unverified")) == 1  # Once per checkpointer.
  _save(ckpt, 3, 3.0)  # The next save writes them.
  record = ckpt.read_json(3, checkpoints.CHECKSUMS)
  assert record["algorithm"] == "crc32"
  assert record["arrays"]["state"]["['w']"] == {
    "dtype": "float32",
    "shape": [64, 64],
    "crc32": checksums.crc32(_tree(3.0)["w"]),
  }
  ckpt.close()


def test_load_gan_falls_back_from_a_damaged_latest_step(tmp_path, caplog):
  """Through loading.load_gan on the tiny config's GAN state (its shapes, random numbers:
  nothing compiled but the checksums): the previous step is loaded, the folder left as it is."""
  config = tiny.get_config()
  generator, critic = build.build_generator(config), build.build_critic(config)
  abstract = loading.abstract_gan_state(generator, critic, config)
  rng = np.random.default_rng(0)
  ckpt = loading.gan_checkpointer(str(tmp_path))
  for step in (4, 8):
    gan = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
    ckpt.save(
      step,
      dict(
        loading.gan_items(gan),
        config=checkpoints.config_to_dict(config),
        meta={"step": step, "stage": 1, "alpha": 1.0},
      ),
    )
    if step == 4:
      expected = gan.d_params
  ckpt.close()
  _flip(os.path.join(str(tmp_path), layout.GAN_DIR, "8"))
  loaded = loading.load_gan(str(tmp_path), config, with_critic=True)
  assert loaded.step == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.d_params), expected)
  assert len(_warnings(caplog, "damaged")) == 1
  with pytest.raises(checkpoints.DamagedCheckpoint, match="step 8"):
    loading.load_gan(str(tmp_path), config, with_critic=True, step=8)
  assert sorted(os.listdir(os.path.join(str(tmp_path), layout.GAN_DIR))) == ["4", "8"]


def test_a_damaged_step_on_an_object_store_is_copied_aside(tmp_path):
  """No folder rename on an object store: each object is copied, then the folder deleted
  (``ram://``: tf.io.gfile's in-memory file system, the backend of gs://; it keeps empty
  folders, and lists "7.damaged" under "7", so only the objects are compared). A name already
  taken gets the next free one (checked on a local folder)."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/ram_path.py
  import ram_path  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top

  root = epath.Path("ram://moved")
  for name, data in (("7/commit_success.txt", b"ok"), ("7/state/d/abc", b"\x00\x01")):
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  target = checkpoints._moved_aside_name(root / "7")  # pylint: disable=protected-access
  assert target.name == "7.damaged"
  checkpoints._move_aside(root / "7", target)  # pylint: disable=protected-access
  assert ram_path.listing("ram://moved") == [
    "7.damaged/commit_success.txt",
    "7.damaged/state/d/abc",
  ]
  assert (target / "state" / "d" / "abc").read_bytes() == b"\x00\x01"
  local = epath.Path(tmp_path)
  (local / "3.damaged").mkdir()
  name = checkpoints._moved_aside_name(local / "3").name  # pylint: disable=protected-access
  assert name == "3.damaged-2"


# ------------------------------------------------------------------------------ failed writes


def test_a_failed_write_is_write_failed_and_a_bug_is_not(tmp_path, monkeypatch):
  ckpt = checkpoints.Checkpointer(str(tmp_path / "ckpt"), ITEMS)
  _save(ckpt, 1, 1.0)

  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ckpt._manager, "save", no_space)  # pylint: disable=protected-access
  with pytest.raises(
    errors.WriteFailed,
    match="could not write the checkpoint of step 2 to .*ckpt: no space left on the device",
  ) as info:
    _save(ckpt, 2, 2.0)
  assert isinstance(info.value.__cause__, OSError)

  def bug(*args, **kwargs):
    raise KeyError("a bug")

  monkeypatch.setattr(ckpt._manager, "save", bug)  # pylint: disable=protected-access
  with pytest.raises(KeyError, match="a bug"):
    _save(ckpt, 2, 2.0)


def test_a_save_failing_midway_leaves_only_an_incomplete_step(tmp_path, monkeypatch):
  """Every item written, then writing Orbax's commit marker fails (the disk is full): WriteFailed,
  the leftover temporary folder is an incomplete step for the next run (which removes it), step
  1 is untouched. (A failure while the items are written leaves the same folder; in-process,
  the other items' writes may still be in flight then, so the marker is where it is injected.)"""
  d = str(tmp_path / "ckpt")
  ckpt = checkpoints.Checkpointer(d, ITEMS)
  _save(ckpt, 1, 1.0)

  temporary = ocp.path.atomicity.AtomicRenameTemporaryPath
  finalize = temporary.finalize

  async def no_space(self):
    if not self.get().name.startswith("2."):  # An item's folder inside the step's.
      return await finalize(self)
    assert os.path.isdir(os.path.join(str(self.get()), "state"))  # The items are written.
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(temporary, "finalize", no_space)
  with pytest.raises(errors.WriteFailed, match="step 2 .*no space left"):
    _save(ckpt, 2, 2.0)
  monkeypatch.undo()
  left = layout.incomplete_steps(d)
  assert [s for s, _, _ in left] == [2], os.listdir(d)
  assert ".orbax-checkpoint-tmp" in os.path.basename(left[0][1])

  writer = checkpoints.Checkpointer(d, ITEMS)
  assert writer.all_steps() == [1]
  _save(writer, 2, 2.0)
  assert sorted(os.listdir(d)) == ["1", "2"]
  assert [s for s, _ in [_restore_latest(writer)]] == [2]
  writer.close()


# ------------------------------------------------------------------ a reader beside a writer


def test_a_reader_on_the_oldest_kept_step_keeps_it_from_the_writers_keep_last_n(
  tmp_path, monkeypatch
):
  """fid / evaluate / sample reading a run while it trains: load_gan of the oldest kept step
  (4 of 4, 8; the writer keeps 2) while the training saves step 12, which would remove step 4.
  The reader's hold keeps it until the read is done (its arrays are those saved); the next save
  removes it, and the reader leaves nothing behind."""
  config = tiny.get_config()
  generator, critic = build.build_generator(config), build.build_critic(config)
  abstract = loading.abstract_gan_state(generator, critic, config)
  rng = np.random.default_rng(0)
  writer = loading.gan_checkpointer(str(tmp_path), keep=2)
  saved = {}

  def save(step):
    gan = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), abstract)
    writer.save(
      step,
      dict(
        loading.gan_items(gan),
        config=checkpoints.config_to_dict(config),
        meta={"step": step, "stage": 1, "alpha": 1.0},
      ),
    )
    saved[step] = gan.ema_params

  for step in (4, 8):
    save(step)
  load_step = loading._load_gan_step  # pylint: disable=protected-access

  def load_while_the_writer_saves(ckpt, directory, step, *args):
    save(12)  # Under keep-last-2 this removes step 4, unless a reader holds it.
    return load_step(ckpt, directory, step, *args)

  monkeypatch.setattr(loading, "_load_gan_step", load_while_the_writer_saves)
  loaded = loading.load_gan(str(tmp_path), config, step=4)
  assert loaded.step == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.ema_params), saved[4])
  folder = os.path.join(str(tmp_path), layout.GAN_DIR)
  assert sorted(int(n) for n in os.listdir(folder) if n.isdigit()) == [4, 8, 12]
  save(16)
  assert writer.all_steps() == [12, 16]
  assert not os.path.exists(os.path.join(folder, "readers"))
  writer.close()
