"""Reliability: training survives kill -9 and SIGTERM (preemption) from the real command line
bit for bit, a crash while a checkpoint is written leaves the previous one in use, and the
config / data faults not tested elsewhere give clear errors.

The command-line tests run ``python main.py --config=configs/tiny.py`` at a fixed 8 px for 24
iterations (a checkpoint every 12) through the harness of benchmarks/fault_injection.py, which
also runs more cases (and random signal points) and writes a results table. They are marked
slow (5 training runs, about 2 minutes on 2 CPU cores); the CI command runs them too.
"""

import os
import shutil
import signal

import ml_collections
import numpy as np
import pytest
from PIL import Image

from benchmarks import fault_injection as fi
from benchmarks import run_folder_faults as rff
from configs import tiny
from layered_gan_jax.checks import compatibility, validate
from layered_gan_jax.data import eval_input, transforms
from layered_gan_jax.errors import ConfigError, DataError
from layered_gan_jax.run import checkpoints, layout

N = fi.STEPS
HALF = N // 2


def _ok(r):
  assert r.proc.returncode == 0, f"exit {r.proc.returncode}\n{r.command}\n{r.tail()}"


def _assert_identical(reference, workdir):
  step, arrays = fi.final_arrays(workdir)
  assert step == N
  diff = fi.compare(reference, arrays)
  assert not diff, diff


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The whole training state after N iterations in one uninterrupted command."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  r = fi.run(fi.train_args(workdir))
  _ok(r)
  assert fi.complete_steps(workdir) == [HALF, N]
  return fi.final_arrays(workdir)[1]


# ------------------------------------------------------------------------------ kill -9


@pytest.mark.slow
def test_kill9_while_saving_then_restart_is_bit_identical(reference, tmp_path):
  """kill -9 after the checkpoint of N/2, while orbax writes the one of step N (its temporary
  folder is left), plus a planted step folder without orbax's commit marker and with half its
  files (a copy that stopped halfway, which orbax alone would take for the latest step): the
  restart ignores and removes both with a log line, resumes from N/2 and ends with exactly the
  state of the uninterrupted run (parameters, Adam, EMA, RNG key: RNG and data order are
  restored). Kills at other points (mid-step, random lines) are benchmarks/fault_injection.py
  cases."""
  workdir = str(tmp_path)
  r = fi.run(fi.train_args(workdir), signal_on=(fi.save_started_line(N), signal.SIGKILL))
  assert r.proc.returncode == -signal.SIGKILL, "the save finished before the kill:\n" + r.tail()
  assert fi.complete_steps(workdir) == [HALF]
  assert fi.leftovers(workdir) == [f"{N}.orbax-checkpoint-tmp"]
  ckpt_dir = fi.checkpoint_dir(workdir)
  half_copy = os.path.join(ckpt_dir, str(HALF + 6))
  shutil.copytree(os.path.join(ckpt_dir, str(HALF)), half_copy)
  os.remove(os.path.join(half_copy, checkpoints.COMMIT_MARKER))
  shutil.rmtree(os.path.join(half_copy, "state"))
  assert fi.complete_steps(workdir) == [HALF]

  r = fi.run(fi.train_args(workdir))
  _ok(r)
  for step, name in ((N, f"{N}.orbax-checkpoint-tmp"), (HALF + 6, str(HALF + 6))):
    assert r.find(rf"Ignoring the incomplete checkpoint step {step} at \S*/{name} "), r.tail()
    assert r.find(rf"Removing the incomplete checkpoint step {step} at \S*/{name} "), r.tail()
  assert fi.resumed_from(r) == HALF
  _assert_identical(reference, workdir)
  assert fi.leftovers(workdir) == [] and fi.complete_steps(workdir) == [HALF, N]


# ------------------------------------------------------------------------------ SIGTERM


@pytest.mark.slow
def test_sigterm_saves_exits_0_and_the_restart_continues(reference, tmp_path):
  workdir = str(tmp_path)
  r = fi.run(fi.train_args(workdir), signal_on=(fi.metrics_line(3), signal.SIGTERM))
  _ok(r)
  assert r.find("SIGTERM received: saving a checkpoint and stopping")
  stop = fi.stopped_at(r)
  assert stop is not None and 3 <= stop < N, r.tail()
  assert fi.complete_steps(workdir)[-1] == stop  # The checkpoint of the step reached.
  r = fi.run(fi.train_args(workdir))
  _ok(r)
  assert fi.resumed_from(r) == stop
  _assert_identical(reference, workdir)


# ------------------------------------------------------------------------------ run folder
# The cases of benchmarks/run_folder_faults.py: each injects its fault into the real command,
# checks the stop's one line and exit status, reruns and compares with the reference.


def _case(case_fn, tmp_path, reference):
  case = case_fn(str(tmp_path), {"reference": reference})
  assert case.ok, "\n".join(case.observed + [r.command + "\n" + r.tail(15) for r in case.runs])


@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_first_ends_as_if_alone(reference, tmp_path):
  _case(rff.case_second_writer, tmp_path, reference)


@pytest.mark.slow
def test_a_full_disk_at_the_first_checkpoint_stops_in_one_line_and_resumes(reference, tmp_path):
  _case(rff.case_full_disk_first, tmp_path, reference)


@pytest.mark.slow
def test_a_full_disk_at_a_later_checkpoint_keeps_the_earlier_one(reference, tmp_path):
  _case(rff.case_full_disk_later, tmp_path, reference)


@pytest.mark.slow
def test_a_non_finite_loss_stops_in_one_line(tmp_path):
  _case(rff.case_non_finite, tmp_path, None)


# ------------------------------------------------------------------------------ checkpointing


def _save(ckpt, step, value):
  ckpt.save(
    step,
    {"state": {"w": np.full((3,), value, np.float32)}, "config": {"a": 1}, "meta": {"step": step}},
  )


def test_incomplete_steps_are_ignored_by_readers_and_removed_by_the_writer(tmp_path):
  items = ("state", "config", "meta")
  d = str(tmp_path / "ckpt")
  ckpt = checkpoints.Checkpointer(d, items)
  for step in (1, 2):
    _save(ckpt, step, step)
  ckpt.close()
  shutil.copytree(os.path.join(d, "2"), os.path.join(d, "3"))
  os.remove(os.path.join(d, "3", checkpoints.COMMIT_MARKER))
  os.makedirs(os.path.join(d, "4"))  # Created, nothing written.
  os.makedirs(os.path.join(d, "5.orbax-checkpoint-tmp", "state"))
  found = layout.incomplete_steps(d)
  assert [(s, os.path.basename(p)) for s, p, _ in found] == [
    (3, "3"),
    (4, "4"),
    (5, "5.orbax-checkpoint-tmp"),
  ]
  assert "commit_success.txt" in found[0][2]

  reader = checkpoints.Checkpointer(d, items)
  assert reader.all_steps() == [1, 2] and reader.latest_step() == 2
  assert reader.read_json(reader.latest_step(), "meta") == {"step": 2}
  reader.close()
  assert len(layout.incomplete_steps(d)) == 3  # Readers delete nothing.

  writer = checkpoints.Checkpointer(d, items, max_to_keep=3)
  _save(writer, 3, 30.0)  # The step of a removed incomplete folder can be saved again.
  assert layout.incomplete_steps(d) == []
  assert sorted(os.listdir(d)) == ["1", "2", "3"]
  assert writer.all_steps() == [1, 2, 3]
  abstract = {"w": np.zeros((3,), np.float32)}
  restored = writer.restore(3, {"state": checkpoints.abstract_like(abstract)})["state"]
  np.testing.assert_array_equal(np.asarray(restored["w"]), [30.0] * 3)
  writer.close()


def test_a_step_without_the_commit_marker_is_incomplete_even_when_no_step_has_one(tmp_path):
  """What a bucket holds after the first save of a run was killed (the step's objects, not the
  marker): not a checkpoint, nor are the others without one; temporary folders neither."""
  items = ("state", "config", "meta")
  d = str(tmp_path)
  ckpt = checkpoints.Checkpointer(d, items)
  for step in (1, 2):
    _save(ckpt, step, step)
  ckpt.close()
  for step in (1, 2):
    os.remove(os.path.join(d, str(step), checkpoints.COMMIT_MARKER))
  os.makedirs(os.path.join(d, "3.orbax-checkpoint-tmp"))
  assert [s for s, _, _ in layout.incomplete_steps(d)] == [1, 2, 3]
  assert layout.complete_steps(d) == []
  reader = checkpoints.Checkpointer(d, items)
  assert reader.latest_step() is None and reader.all_steps() == []
  reader.close()


# ------------------------------------------------------------------------------ config errors
# tests/test_main.py covers, through the command line: resolution 48 and 2048, eta = 1.0,
# shift = 0.6, a zero width, an unknown data.name and mode, a batch of 6 on 4 devices and a
# restart with another style_dim. These are the other sides of the same rules.


def _bad(mutate, devices=1):
  config = tiny.get_config()
  mutate(config)
  with pytest.raises(ConfigError) as e:
    validate.validate_config(config, "train", devices)
  return str(e.value)


@pytest.mark.parametrize(
  "mutate,needle",
  [
    (lambda c: setattr(c.train, "resolution", 4), "between 8 and 1024"),
    (
      lambda c: setattr(c.train, "start_resolution", 12),
      "train.start_resolution=12 must be a power of two",
    ),
    (lambda c: setattr(c.train, "resolution", 0), "power of two"),
    (lambda c: setattr(c.train, "start_resolution", 32), "start_resolution=32 is above"),
    (lambda c: setattr(c.loss, "min_mask_coverage", -0.1), "must be in [0, 1)"),
    (lambda c: setattr(c.perturb, "shift", -0.01), "perturb.shift=-0.01 must be in [0, 0.5]"),
    (lambda c: setattr(c.model, "channels", (16, -8, 8)), "must be positive integers"),
    (lambda c: setattr(c.model, "style_dim", 0), "model.style_dim=0 must be > 0"),
    (lambda c: setattr(c.model, "mapping_layers", -1), "model.mapping_layers=-1"),
    (lambda c: setattr(c.encoder, "width", 0), "encoder.width"),
    (lambda c: setattr(c.encoder, "max_width", -4), "encoder.max_width"),
    (lambda c: setattr(c.eval.data, "name", "imagenet"), "eval.data.name='imagenet' is unknown"),
    # The same bounds as the input pipeline's own check, which would only fail later.
    (lambda c: setattr(c.data, "org_to_crop", 4.5), "data.org_to_crop=4.5 must be in [1, 4]"),
    (lambda c: setattr(c.data, "org_to_crop", 0.9), "data.org_to_crop=0.9 must be in [1, 4]"),
  ],
)
def test_config_errors_not_covered_by_the_cli_tests(mutate, needle):
  assert needle in _bad(mutate)


@pytest.mark.parametrize(
  "mutate,needle",
  [
    (
      lambda c: setattr(c.train, "batch_sizes", "16:6"),
      "batch size 6 at 16 px is not divisible by the 4 devices",
    ),
    (lambda c: setattr(c.encoder, "batch_size", 6), "encoder.batch_size=6"),
    (lambda c: setattr(c.eval, "batch_size", 2), "eval.batch_size=2"),
  ],
)
def test_every_batch_size_must_divide_by_the_devices(mutate, needle):
  assert needle in _bad(mutate, devices=4)


def test_boundary_values_are_accepted():
  config = tiny.get_config()
  config.perturb.shift = 0.5
  config.loss.min_mask_coverage = 0.0
  config.train.start_resolution = config.train.resolution = 8
  validate.validate_config(config, "train", 8)
  config.perturb.shift = 0.0
  config.loss.min_mask_coverage = 0.99
  validate.validate_config(config, "train", 1)


@pytest.mark.parametrize("field", compatibility.MODEL_FIELDS)
def test_restart_refused_for_every_model_field(field):
  """Each field that defines the model's parameters is compared on restart."""
  saved = checkpoints.config_to_dict(tiny.get_config())
  current = checkpoints.config_to_dict(tiny.get_config())
  section, name = field.split(".")
  value = current[section][name]
  current[section][name] = (
    value + [8]
    if isinstance(value, list)
    else value * 2
    if isinstance(value, int)
    else value - 1.0
    if isinstance(value, float)
    else value + "_other"
  )
  diffs = compatibility.model_differences(saved, current)
  assert len(diffs) == 1 and diffs[0].startswith(f"{field}: checkpoint "), diffs
  assert compatibility.model_differences(saved, saved) == []


# ------------------------------------------------------------------------------ data faults
# tests/test_image_io.py and tests/test_data.py cover missing and empty folders;
# corrupt, truncated, zero-byte, grayscale, RGBA, CMYK and 16-bit images; masks at another
# size; masks without an image and images without a mask. Not covered there: an unreadable
# mask file, and the log line of a mask at another size.


def _eval_folder(root, n=3):
  rng = np.random.default_rng(0)
  for sub in ("images", "masks"):
    os.makedirs(os.path.join(root, sub))
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
      os.path.join(root, "images", f"im{i}.png")
    )
    Image.fromarray(((rng.random((24, 32)) > 0.5) * 255).astype(np.uint8)).save(
      os.path.join(root, "masks", f"im{i}.png")
    )


def _eval_cfg(root, **kw):
  return ml_collections.ConfigDict(dict(name="folder", path=root, num_workers=1, prefetch=1, **kw))


def test_unreadable_mask_skipped_and_listed_or_an_error(tmp_path):
  root = str(tmp_path / "data")
  _eval_folder(root)
  bad = os.path.join(root, "masks", "im1.png")
  open(bad, "wb").close()  # Zero bytes.
  ev = eval_input.eval_dataset(_eval_cfg(root, on_bad_file="skip"), resolution=16, batch_size=4)
  batch = next(ev)
  assert ev.num_examples == 2 and list(batch["valid"]) == [True, True, False, False]
  assert ev.skipped_files == [bad]
  with pytest.raises(DataError, match=r"masks/im1\.png.*empty"):
    eval_input.eval_dataset(_eval_cfg(root, on_bad_file="error"), resolution=16, batch_size=4)


def test_mask_of_another_size_is_resized_and_logged(tmp_path, caplog):
  root = str(tmp_path / "data")
  _eval_folder(root, n=1)
  mask_path = os.path.join(root, "masks", "im0.png")
  mask = np.asarray(Image.open(mask_path))
  Image.fromarray(mask).resize((64, 48), Image.Resampling.NEAREST).save(mask_path)
  counter = eval_input._SIZE_WARNINGS  # pylint: disable=protected-access
  saved, counter[0] = counter[0], 0  # At most 20 such warnings per process.
  try:
    with caplog.at_level("WARNING"):
      batch = next(eval_input.eval_dataset(_eval_cfg(root), resolution=16, batch_size=1))
  finally:
    counter[0] = saved
  assert any("is 64x48 but its image" in m and "im0.png" in m for m in caplog.messages)
  want = (transforms.resize_mask(mask / 255.0, 16) > 0.5).astype(np.float32)
  assert (batch["mask"][0] == want).mean() > 0.9


def test_checkpoint_without_newer_model_fields_is_compatible():
  """A config saved before ``model.mask_logit_offset`` existed equals offset 0, not another
  model; a different offset is reported."""
  saved = checkpoints.config_to_dict(tiny.get_config())
  del saved["model"]["mask_logit_offset"]
  current = checkpoints.config_to_dict(tiny.get_config())
  assert compatibility.model_differences(saved, current) == []
  current["model"]["mask_logit_offset"] = -3.0
  diffs = compatibility.model_differences(saved, current)
  assert len(diffs) == 1 and "model.mask_logit_offset" in diffs[0]
