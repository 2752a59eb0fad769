"""layered_gan_jax/files.py: a file is replaced whole or not at all."""

import json
import os
import sys

import pytest

from layered_gan_jax import files

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/ram_path.py


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


def test_a_ram_workdir_holds_everything_the_project_writes(tmp_path, monkeypatch):
  """train, resume, train_encoder, train_segmenter, evaluate, sample and segment with a
  ``ram://`` workdir (tf.io.gfile's in-memory file system, the backend of gs://): every file
  the project writes itself lands there. Orbax's array storage (tensorstore) takes only local
  paths and real object stores, so at that one seam (checkpoints.orbax_directory) the test
  hands Orbax a local folder, after asserting that the workdir URI reached it unchanged (no
  abspath, no local 'ram:' folder). On the code before issue 32 this fails at the first
  os.makedirs(os.path.abspath('ram://...')) (a local ./ram:/ folder, then no ram:// files)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import ram_path  # pylint: disable=g-import-not-at-top
  from etils import epath  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from configs import tiny  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.evaluation import evaluate, inference

  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.run import checkpoints
  from layered_gan_jax.training import train_encoder, train_gan, train_segmenter

  workdir = "ram://run"
  seen = []

  def local_for_orbax(directory):
    seen.append(directory)
    assert directory.startswith(workdir + "/"), directory
    epath.Path(directory).mkdir(parents=True, exist_ok=True)  # The folder, as on gs://.
    return epath.Path(tmp_path / "orbax" / directory[len(ram_path.PREFIX) :])

  monkeypatch.setattr(checkpoints, "orbax_directory", local_for_orbax)
  monkeypatch.chdir(tmp_path)
  config = tiny.get_config()
  config.train.max_steps = 4
  train_gan.train_and_evaluate(config, workdir)
  config.train.max_steps = 6
  state = train_gan.train_and_evaluate(config, workdir)  # Resumes from step 4.
  assert int(state.step) == 6
  train_encoder.train_and_evaluate(config, workdir)
  train_segmenter.train_and_evaluate(config, workdir)
  metrics = evaluate.evaluate(config, workdir)
  assert evaluate.read_metrics(workdir)["fg_iou"] == metrics["fg_iou"]
  inference.sample(config, workdir, "ram://samples", num_samples=2)
  (tmp_path / "in").mkdir()
  Image.fromarray(np.full((12, 10, 3), 80, np.uint8)).save(tmp_path / "in" / "a.png")
  report = inference.segment(config, workdir, str(tmp_path / "in"), "ram://segments")
  assert report["segmented"] == 1

  written = ram_path.listing(workdir)
  for expected in ("samples/latest.png", "eval/metrics.json", "eval/panel.png"):
    assert expected in written, written
  for folder in ("", "encoder/", "segmenter/", "eval/"):  # clu's event files.
    assert any(f.startswith(folder + "events.out.tfevents") for f in written), (folder, written)
  assert {"grid.png", "composite/00000.png"} <= set(ram_path.listing("ram://samples"))
  assert {"a_mask.png", "a_overlay.png", "segment_report.json"} <= set(
    ram_path.listing("ram://segments")
  )
  assert {d[len(workdir) + 1 :] for d in seen} == {
    "checkpoints",
    "encoder_checkpoints",
    "segmenter_checkpoints",
  }
  assert not any(p.name.startswith("ram") for p in tmp_path.iterdir())  # No local ram: folder.
