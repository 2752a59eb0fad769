"""Smoke tests of benchmarks/throughput.py on the tiny config (CPU, seconds; numbers meaningless).

Most of the time is the XLA compile of the tiny training step (about 10-30 s per test on a
2-core CPU); the persistent compilation cache of conftest.py may shorten repeated compiles.
"""

import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = [
  "--config=configs/tiny.py",
  "--resolution=8",
  "--batch=8",
  "--steps=2",
  "--warmup=1",
  "--matmul_size=128",
  "--matmul_reps=3",
  "--pipeline_batches=5",
]
KEYS = (
  "images_per_s",
  "step_seconds_median",
  "step_seconds_all",
  "compile_seconds",
  "flops_per_iteration",
  "achieved_flops_per_s",
  "matmul_flops_per_s",
  "utilization",
  "peak_memory_bytes",
  "peak_memory_kind",
  "input_pipeline_images_per_s",
  "config",
  "resolution",
  "batch",
  "dtype",
  "devices",
  "device_kind",
  "command",
  "machine",
  "date",
  "jax_version",
)


def _run(tmp_path, *extra):
  out = tmp_path / "throughput.json"
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.throughput", *COMMON, *extra, f"--json={out}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "img/s" in proc.stdout
  return json.loads(out.read_text())


def _check_common(r, dtype):
  missing = [k for k in KEYS if k not in r]
  assert not missing, missing
  assert r["images_per_s"] > 0 and math.isfinite(r["images_per_s"])
  assert len(r["step_seconds_all"]) == 2 and all(s > 0 for s in r["step_seconds_all"])
  assert r["images_per_s"] == pytest.approx(8 / r["step_seconds_median"])
  assert r["flops_per_iteration"] > 0
  assert r["matmul_flops_per_s"] > 0
  assert 0 < r["utilization"] < 10  # loose: a tiny step vs a small matmul on a shared CPU
  assert r["compile_seconds"] > 0
  assert r["peak_memory_bytes"] > 0
  assert r["input_pipeline_images_per_s"] > 0
  assert (r["resolution"], r["batch"], r["dtype"]) == (8, 8, dtype)
  assert r["devices"] >= 1 and r["machine"]["nproc"] >= 1
  assert r["param_dtypes"] == ["float32"]
  assert r["warmup_metrics_finite"]
  assert all(math.isfinite(v) for v in r["last_metrics"].values())


@pytest.mark.slow
def test_throughput_bf16_with_fp32_comparison_smoke(tmp_path):
  """One run covers both dtypes: the bf16 step timed, and the fp32 step it is compared with."""
  r = _run(tmp_path, "--dtype=bfloat16", "--compare_fp32_steps=2", "--config.train.lr=0.0015")
  _check_common(r, "bfloat16")
  assert r["overrides"] == {"train.lr": 0.0015}  # main.py's override syntax reaches the config.
  assert r["data_used"] == "synthetic"
  assert r["matmul_bf16_flops_per_s"] > 0
  drift = r["bf16_loss_drift"]
  assert drift["steps"] == 2 and len(drift["per_step"]) == 2 and drift["all_finite"]
  assert set(drift["max_per_loss"]) == {"critic_loss", "generator_loss", "gradient_penalty"}
  # bf16 only changes the computation dtype: the losses stay close to fp32 for two steps.
  assert 0 <= drift["max_per_loss"]["critic_loss"] < 0.1
  assert 0 <= drift["max"] == max(drift["max_per_loss"].values())


def test_unavailable_dataset_falls_back_to_synthetic():
  from benchmarks import throughput  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  config, _ = throughput.load_config(os.path.join(REPO, "configs", "car.py"))
  config.data.data_dir = str(REPO)  # No tfds data here.
  cfg, used, note = throughput.resolve_data(config, 8, 8, 32)
  assert used == "synthetic" and cfg["name"] == "synthetic" and cfg["num_train_examples"] == 32
  assert "lsun/car is not available offline" in note
  cfg, used, note = throughput.resolve_data(config, 256, 8, 32)
  assert cfg is None and used == "random"


def test_benchmark_config_overrides_use_main_py_syntax():
  """benchmarks/common.load_config parses --config.FIELD=VALUE as main.py does (types from the
  config, tuples, bools) and refuses anything else with one line."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  path = os.path.join(REPO, "configs", "tiny.py")
  config, applied = common.load_config(
    path,
    [
      "--config.perturb.shift=0.25",
      "--config.model.channels=(8,8,4)",
      "--config.data.random_crop=False",
    ],
  )
  assert config.perturb.shift == 0.25 and config.model.channels == (8, 8, 4)
  assert config.data.random_crop is False
  assert applied == {"perturb.shift": 0.25, "model.channels": (8, 8, 4), "data.random_crop": False}
  assert common.load_config(path)[0].perturb.shift == 0.125
  for bad in (
    ["--set=perturb.shift=0.25"],
    ["--config.perturb.no_such_field=1"],
    ["--config.perturb.shift=abc"],
  ):
    with pytest.raises(SystemExit, match="error: "):
      common.load_config(path, bad)


_NO_TF_SCRIPT = r"""
import sys
from clu import metric_writers
writer = metric_writers.create_default_writer(sys.argv[1])
writer.write_scalars(1, {"x": 1.0})
writer.flush()
from layered_gan_jax.training import train_gan  # noqa: F401  (the trainers import clu too)
print("tensorflow" in sys.modules)
"""


def test_no_tf_launch_runs_a_script_with_logging_only_writers(tmp_path):
  """benchmarks/device/no_tf_launch.py (for GPU machines without TensorFlow): with the stand-in
  forced, a script that imports clu and the trainers runs, its default writers write no event
  files, and the stand-in is gone from sys.modules again."""
  script = tmp_path / "script.py"
  script.write_text(_NO_TF_SCRIPT)
  logdir = tmp_path / "logs"
  env = dict(os.environ, FORCE_TF_STUB="1")
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.device.no_tf_launch", str(script), str(logdir)],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "TensorFlow stand-in" in result.stdout
  assert result.stdout.strip().splitlines()[-1] == "False"
  assert not list(logdir.rglob("*tfevents*"))


def test_dataset_variants_summary(tmp_path):
  """The summary reads each run's .variant line and its eval/metrics.json; a missing run is
  listed as missing, not dropped."""
  from benchmarks.device import dataset_variants_summary as summary  # pylint: disable=g-import-not-at-top,import-outside-toplevel

  (tmp_path / "A.variant").write_text(
    "A margin=0.125 rim=0.8 setting=default seed=1 --gan_steps=4000\n"
  )
  (tmp_path / "B.variant").write_text("B margin=-0.15 rim=0.0 setting=no_shift seed=0\n")
  run = tmp_path / "A" / "default" / "seed_1" / "eval"
  run.mkdir(parents=True)
  metrics = {
    "fg_iou": 0.5,
    "miou": 0.6,
    "resolution": 32,
    "num_images": 10,
    "generated": {
      "mask_coverage": 0.4,
      "reference_miou": 0.7,
      "reference_miou_inverted_mask": 0.1,
      "reference_fg_iou": 0.65,
      "binarized_coverage_std": 0.05,
    },
    "baselines": {"grabcut": {"fg_iou": 0.8}, "center_prior": {"fg_iou": 0.6}},
  }
  (run / "metrics.json").write_text(json.dumps(metrics))
  out = tmp_path / "s.json"
  result = summary.main([f"--dir={tmp_path}", f"--json={out}"])
  a, b = result["runs"]
  assert (a["margin"], a["rim"], a["setting"], a["seed"], a["extra"]) == (
    0.125,
    0.8,
    "default",
    1,
    "--gan_steps=4000",
  )
  assert (a["fg_iou"], a["reference_miou_inverted_mask"], a["grabcut_fg_iou"]) == (0.5, 0.1, 0.8)
  assert (a["reference_fg_iou"], a["binarized_coverage_std"]) == (0.65, 0.05)
  assert "missing" in b and b["setting"] == "no_shift"
  assert (
    "| A | 0.125 | 0.8 | default | 1 | --gan_steps=4000 | 0.500 | 0.600 | 0.700 |"
    in (result["table"])
  )
  assert json.loads(out.read_text())["runs"][0]["name"] == "A"
