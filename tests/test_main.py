"""The command line: clear one-line errors (exit status 2, no traceback) and a full pipeline."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(args, env=None, timeout=900):
  return subprocess.run([sys.executable, os.path.join(REPO, "main.py")] + args, cwd=REPO,
                        env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                        timeout=timeout)


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
]


@pytest.mark.parametrize("field,value,needle", BAD_FIELDS)
def test_bad_config_rules(field, value, needle):
  """The rules, checked in process (the command line's plumbing is tested below)."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import config_validation  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(config_validation.ConfigError) as e:
    config_validation.validate_config(config, "pipeline")
  assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("override,needle", [
    ("--config.perturb.shift=0.6", "perturb.shift=0.6 must be in [0, 0.5]"),
    ("--mode=dance", "unknown mode 'dance'"),
])
def test_bad_config_gives_one_line_and_status_2(tmp_path, override, needle):
  result = _main(["--config=configs/tiny.py", f"--workdir={tmp_path}", override])
  _assert_clean_error(result, needle)
  assert not os.listdir(tmp_path)  # Nothing was written.


def test_batch_not_divisible_by_devices(tmp_path):
  result = _main(["--config=configs/tiny.py", f"--workdir={tmp_path}",
                  "--config.train.batch_size=6"],
                 env={"XLA_FLAGS": " ".join([os.environ.get("XLA_FLAGS", ""),
                                             "--xla_force_host_platform_device_count=4"])})
  _assert_clean_error(result, "not divisible by the 4 devices")


def test_missing_folder(tmp_path):
  result = _main(["--config=configs/tiny.py", f"--workdir={tmp_path / 'w'}",
                  "--config.data.name=folder", f"--config.data.path={tmp_path / 'nope'}"])
  _assert_clean_error(result, str(tmp_path / "nope"))


def test_pipeline_then_restart_with_another_model(tmp_path):
  """train -> train_encoder -> train_segmenter -> evaluate from the command line, then a
  restart whose model differs from the checkpoint's is refused with the differing fields
  listed. (The tiny GAN of tests/test_segmentation.py: the compilation cache holds its
  programs.)"""
  workdir = str(tmp_path / "run")
  result = _main(["--config=configs/tiny.py", f"--workdir={workdir}", "--mode=pipeline",
                  "--config.train.max_steps=6"])
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  assert {"fg_iou", "miou", "pixel_accuracy", "max_fbeta", "baselines"} <= set(metrics)
  assert metrics["route"] == "distilled" and set(metrics["routes"]) == {"distilled", "encoder"}
  result = _main(["--config=configs/tiny.py", f"--workdir={workdir}",
                  "--config.model.style_dim=32", "--config.train.max_steps=7"])
  _assert_clean_error(result, "model.style_dim: checkpoint 16 vs config 32")
  result = _main(["--config=configs/tiny.py", f"--workdir={workdir}", "--mode=sample"])
  _assert_clean_error(result, "--output")
