"""layered_gan_jax/files.py: a file is replaced whole or not at all."""

import json

import pytest

from layered_gan_jax import files


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "sub" / "metrics.json"
  files.write_json(str(path), {"a": 1})
  files.write_json(str(path), {"a": 2}, indent=1)
  assert json.loads(path.read_text()) == {"a": 2}
  assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
  path = tmp_path / "metrics.json"
  files.write_json(str(path), {"a": 1})
  with pytest.raises(TypeError):
    files.write_json(str(path), {"a": object()})  # Not JSON: fails halfway through writing.
  assert json.loads(path.read_text()) == {"a": 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
  with pytest.raises(RuntimeError):
    with files.atomic_path(str(path), ".tmp.npz") as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("killed")
  assert json.loads(path.read_text()) == {"a": 1}
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
