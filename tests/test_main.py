"""The command line: clear one-line errors (exit status 2, no traceback) and a full pipeline."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(args, env=None, timeout=900):
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "main.py")] + args,
    cwd=REPO,
    env=dict(os.environ, **(env or {})),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _assert_clean_error(result, *needles):
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  for needle in needles:
    assert needle in errors[0], errors[0]


BAD_FIELDS = [
  ("train.resolution", 48, "train.resolution=48 must be a power of two"),
  ("train.resolution", 2048, "between 8 and 1024"),
  ("loss.min_mask_coverage", 1.0, "must be in [0, 1)"),
  ("perturb.shift", 0.6, "perturb.shift=0.6 must be in [0, 0.5]"),
  ("model.channels", (16, 0, 8), "must be positive integers"),
  ("data.name", "imagenet", "data.name='imagenet' is unknown"),
  ("model.variant", "three", "model.variant='three'"),
  ("runtime.xla_cpu_kernels", "mkl", "runtime.xla_cpu_kernels='mkl'"),
  ("loss.max_mask_coverage", 0.05, "loss.max_mask_coverage=0.05 must be in"),
  ("model.head_init_std", 0.0, "model.head_init_std=0"),
  ("model.resampling", "bilinear", "model.resampling='bilinear'"),
  ("segmenter.levels", 6, "segmenter.levels=6 needs train.resolution=16"),
  ("segmenter.scale_range", (1.5, 0.6), "segmenter.scale_range=(1.5, 0.6)"),
  ("segmenter.max_cut", 0.5, "segmenter.max_cut=0.5 must be in [0, 0.5)"),
  ("segmenter.swap_background_prob", 2.0, "segmenter.swap_background_prob=2.0"),
  ("segmenter.max_uncertainty", 0.7, "segmenter.max_uncertainty=0.7"),
  ("segment.route", "magic", "segment.route='magic'"),
  ("encoder.refine_steps", -1, "encoder.refine_steps=-1"),
  # Accepted before issue 32, failing later or silently.
  ("train.lr", -1.0, "train.lr=-1.0 must be > 0"),
  ("train.ema_decay", 2.0, "train.ema_decay=2.0 must be in [0, 1]"),
  ("train.adam_b1", 1.5, "train.adam_b1=1.5 must be in [0, 1)"),
  ("train.keep_checkpoints", 0, "train.keep_checkpoints=0 must be > 0"),
  ("encoder.lr", -1.0, "encoder.lr=-1.0 must be > 0"),
  ("encoder.max_steps", 0, "encoder.max_steps=0 must be > 0"),
  ("encoder.log_every_steps", 0, "encoder.log_every_steps=0 must be > 0"),
  ("eval.baselines", ("grabcutt",), "unknown baseline(s) 'grabcutt'"),
  ("eval.max_examples", -5, "eval.max_examples=-5 must be an integer >= 0"),
  ("eval.external_segmenter", "nomodule", "eval.external_segmenter='nomodule' must be"),
  ("data.num_workers", 0, "data.num_workers=0 must be > 0"),
  ("data.prefetch", -1, "data.prefetch=-1 must be an integer >= 0"),
  ("train.batch_sizes", "8:0", "train.batch_sizes='8:0'"),
  ("seed", -1, "seed=-1 must be an integer >= 0"),
  ("segment.mirror_average", 1, "segment.mirror_average=1 must be True or False"),
]


@pytest.mark.parametrize("field,value,needle", BAD_FIELDS)
def test_bad_config_rules(field, value, needle):
  """The rules, checked in process (the command line's plumbing is tested below)."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import errors  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  *sections, name = field.split(".")
  node = config
  for section in sections:
    node = node[section]
  with config.ignore_type():
    node[name] = value
  with pytest.raises(errors.ConfigError) as e:
    validate.validate_config(config, "pipeline")
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_every_field_of_the_default_config_has_a_rule():
  """A field added to configs/default.py without a rule in FIELD_RULES would go unchecked."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import trees  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.checks import fields  # pylint: disable=g-import-not-at-top

  assert set(trees.flatten(default.get_config())) == set(fields.FIELD_RULES)


# ------------------------------------------------------------------------------ refusals
# Every class of bad input, run as a user would: exit status 2, one line on stderr, and no file
# written or changed in the workdir (here one that already holds a checkpoint) nor in the data.
# Most are refused before JAX starts (a quarter of a second each); the three that need the
# devices or the first batch take a few seconds (TensorFlow's import).


def _fake_checkpoint(workdir, config, step=4):
  """A committed GAN checkpoint as far as the checks read it (its config, its marker) plus a
  payload file: nothing restores it, every refusal comes before."""
  from layered_gan_jax.run import checkpoints  # pylint: disable=g-import-not-at-top

  root = workdir / "checkpoints" / str(step)
  for item, value in (
    ("config", checkpoints.config_to_dict(config)),
    ("meta", {"step": step, "stage": 2, "alpha": 1.0}),
  ):
    (root / item).mkdir(parents=True)
    (root / item / "metadata").write_text(json.dumps(value))
  (root / "state").mkdir()
  (root / "state" / "d").write_bytes(os.urandom(256))
  (root / checkpoints.COMMIT_MARKER).write_text("done")


def _write_image(path, size=20):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((size, size, 3), 90, np.uint8)).save(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
  """A workdir holding a GAN checkpoint of configs/tiny.py, and the data of the cases."""
  import lmdb  # pylint: disable=g-import-not-at-top

  from configs import tiny  # pylint: disable=g-import-not-at-top

  root = tmp_path_factory.mktemp("refusals")
  _fake_checkpoint(root / "run", tiny.get_config())
  # A training of this process (alive while the cases run) holds the GAN folder of leased/.
  from benchmarks.run_folder_faults import plant_lease  # pylint: disable=g-import-not-at-top

  plant_lease(str(root / "leased"), os.getpid())
  (root / "corrupt").mkdir()
  (root / "corrupt" / "a.jpg").write_bytes(b"\xff\xd8 not a jpeg" * 20)
  for i in range(2):
    _write_image(root / "plain" / f"{i}.png")
  _write_image(root / "no_masks" / "images" / "0.png")
  env = lmdb.open(str(root / "car_lmdb"), map_size=1 << 20)
  with env.begin(write=True) as txn:
    import io  # pylint: disable=g-import-not-at-top

    import numpy as np  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top

    for k in range(4):
      buf = io.BytesIO()
      Image.fromarray(np.full((20, 24, 3), 40 * k, np.uint8)).save(buf, format="JPEG")
      txn.put(f"{k:02d}".encode(), buf.getvalue())
  env.close()
  return root


def _tree_hashes(root):
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
    for f in filenames:
      with open(os.path.join(dirpath, f), "rb") as fh:
        out[os.path.relpath(os.path.join(dirpath, f), root)] = hashlib.sha256(fh.read()).hexdigest()
  return out


TINY = ["--config=configs/tiny.py", "--workdir={run}"]
FOUR_DEVICES = {
  "XLA_FLAGS": " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=4"]
  )
}
# (case, arguments ({run}: the workdir with a checkpoint, {root}: the scratch folder), needle)
REFUSALS = [
  ("no --workdir", ["--config=configs/tiny.py"], "--workdir is missing"),
  ("no --config", ["--workdir={run}"], "--config is missing"),
  (
    "missing config file",
    ["--config=configs/nope.py", "--workdir={run}"],
    "--config=configs/nope.py: no such file",
  ),
  (
    "override typo",
    TINY + ["--config.train.bach_size=4"],
    "--config.train.bach_size: the config has no field 'bach_size'; did you mean \"batch_size\"",
  ),
  ("override of the wrong type", TINY + ["--config.train.lr=fast"], "--config.train.lr=fast"),
  ("unknown flag", TINY + ["--bogus=1"], "Unknown command line flag 'bogus'"),
  ("unknown mode", TINY + ["--mode=dance"], "unknown mode 'dance'"),
  ("negative batch", TINY + ["--config.train.batch_size=-4"], "train.batch_size=-4 must be > 0"),
  ("out of range", TINY + ["--config.train.ema_decay=2"], "train.ema_decay=2.0 must be in [0, 1]"),
  ("unknown name", TINY + ["--config.eval.baselines=('grabcutt',)"], "'grabcutt'"),
  (
    "plug-in not found",
    TINY + ["--config.eval.external_segmenter=nomodule:fn"],
    "no module 'nomodule'",
  ),
  ("batch vs devices", TINY + ["--config.train.batch_size=6"], "not divisible by the 4 devices"),
  (
    "no data folder",
    TINY + ["--config.data.name=folder", "--config.data.path={root}/nope"],
    "{root}/nope: no such folder",
  ),
  (
    "corrupt data, skip",
    TINY + ["--config.data.name=folder", "--config.data.path={root}/corrupt"],
    "cannot fill its first batch of 8",
  ),
  (
    "corrupt data, error",
    TINY
    + [
      "--config.data.name=folder",
      "--config.data.path={root}/corrupt",
      "--config.data.on_bad_file=error",
    ],
    "a.jpg: not a readable image",
  ),
  (
    "pipeline, lmdb without masks",
    [
      "--config=configs/car.py",
      "--workdir={root}/car",
      "--mode=pipeline",
      "--config.data.name=lsun_lmdb",
      "--config.data.path={root}/car_lmdb",
    ],
    "'lsun_lmdb' has no ground-truth masks",
  ),
  (
    "lmdb on an object store",
    TINY + ["--config.data.name=lsun_lmdb", "--config.data.path=gs://bucket/car_lmdb"],
    "gs://bucket/car_lmdb: an lmdb database must be a local folder",
  ),
  (
    "pipeline, folder without masks",
    TINY + ["--mode=pipeline", "--config.data.name=folder", "--config.data.path={root}/plain"],
    "has no images/ and no masks/",
  ),
  (
    "eval folder without masks/",
    TINY
    + [
      "--mode=evaluate",
      "--config.eval.data.name=folder",
      "--config.eval.data.path={root}/no_masks",
    ],
    "no_masks has no masks/",
  ),
  (
    "resume another model",
    TINY + ["--config.model.style_dim=32"],
    "model.style_dim: checkpoint 16 vs config 32",
  ),
  ("route not trained", TINY + ["--mode=evaluate"], "segment.route='distilled' has no trained"),
  (
    "sample, no checkpoint",
    ["--config=configs/tiny.py", "--workdir={root}/empty", "--mode=sample", "--output={root}/out"],
    "no complete GAN checkpoint",
  ),
  ("sample, no --output", TINY + ["--mode=sample"], "--mode=sample needs --output"),
  (
    "segment, no input",
    TINY + ["--mode=segment", "--input={root}/nope", "--output={root}/o"],
    "does not exist",
  ),
  (
    "unknown source kind",
    TINY + ["--config.data.sources=(('synthetic','round',0.5),('imagenet','',0.5))"],
    "data.sources[1]: unknown source kind 'imagenet'",
  ),
  (
    "source weight 0",
    TINY + ["--config.data.sources=(('synthetic','round',0.5),('synthetic','angular',0))"],
    "data.sources[1]: the weight 0 of 'synthetic' must be a number > 0",
  ),
  (
    "source path missing",
    TINY
    + ["--config.data.sources=(('synthetic','round',0.5),('lsun_lmdb','{root}/horse_lmdb',0.5))"],
    "data.sources[1] (horse_lmdb): {root}/horse_lmdb: no lmdb database there",
  ),
  (
    "CUB list missing",
    [
      "--config=configs/cub.py",
      "--workdir={run}",
      "--config.data.cub_test_ids_path={root}/ids.txt",
    ],
    "ids.txt: no such file",
  ),
  (
    "workdir is a file",
    ["--config=configs/tiny.py", "--workdir={root}/plain/0.png/run"],
    "{root}/plain/0.png is a file, not a folder",
  ),
  (
    "fid of a step not saved",
    TINY + ["--mode=fid", "--step=999", "--config.eval.fid_samples=8"],
    "--step=999: no complete GAN checkpoint of that step in {run}/checkpoints (steps: 4)",
  ),
  (
    "a second writer",
    ["--config=configs/tiny.py", "--workdir={root}/leased"],
    "{root}/leased/checkpoints is being written by another training (--mode=train, process",
  ),
  (
    "a second writer in a pipeline",
    ["--config=configs/tiny.py", "--workdir={root}/leased", "--mode=pipeline"],
    "is being written by another",
  ),
]


@pytest.mark.parametrize("case,args,needle", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refused_in_one_line_and_nothing_written(scene, case, args, needle):
  fill = lambda text: text.format(run=scene / "run", root=scene)
  before = _tree_hashes(scene)
  env = FOUR_DEVICES if case == "batch vs devices" else None
  result = _main([fill(a) for a in args], env=env, timeout=120)
  lines = result.stderr.splitlines()
  assert result.returncode == 2 and len(lines) == 1, (case, result.stderr[-3000:])
  assert lines[0].startswith("error: ") and fill(needle) in lines[0], lines[0]
  assert _tree_hashes(scene) == before  # Nothing written, changed or removed.


@pytest.mark.slow
def test_pipeline_then_restart_with_another_model(tmp_path):
  """train -> train_encoder -> train_segmenter -> evaluate from the command line, then a
  restart whose model differs from the checkpoint's is refused with the differing fields
  listed. (The tiny GAN of tests/test_segmentation.py: the compilation cache holds its
  programs.)"""
  workdir = str(tmp_path / "run")
  result = _main(
    [
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      "--mode=pipeline",
      "--config.train.max_steps=6",
    ]
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  assert {"fg_iou", "miou", "pixel_accuracy", "max_fbeta", "baselines"} <= set(metrics)
  assert metrics["route"] == "distilled" and set(metrics["routes"]) == {"distilled", "encoder"}
  result = _main(
    [
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      "--config.model.style_dim=32",
      "--config.train.max_steps=7",
    ]
  )
  _assert_clean_error(result, "model.style_dim: checkpoint 16 vs config 32")
  result = _main(["--config=configs/tiny.py", f"--workdir={workdir}", "--mode=sample"])
  _assert_clean_error(result, "--output")


def test_cub_says_which_split():
  """configs/cub.py without ReDO's list warns in one line which tfds splits are used instead;
  with it, says so; the config's count is all remaining images, as its comment says."""
  from configs import cub  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top

  config = cub.get_config()
  assert config.data.num_train_examples == 11_788 - 1_000
  line, warning = data_config.cub_split_note(config.data)
  assert warning and "training on tfds 'train' (5994 images)" in line and "'test'" in line
  config.data.cub_test_ids_path = "ids.txt"
  line, warning = data_config.cub_split_note(config.data)
  assert not warning and "ReDO's split" in line and "\n" not in line
  assert data_config.cub_split_note(config.eval.data) is None or config.eval.data.name
