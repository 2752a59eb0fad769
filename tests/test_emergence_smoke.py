"""Smoke test of benchmarks/emergence.py: two settings, one seed, a few steps of the tiny config
(numbers mean nothing); checks the result files and the JSON structure."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTING_KEYS = ("fg_iou", "fg_iou_per_seed", "fg_iou_std", "miou", "miou_per_seed",
                "pixel_accuracy", "mask_coverage", "mask_binary_fraction", "reference_miou",
                "reference_fg_iou", "detected_fraction", "seeds", "overrides", "seconds")


@pytest.mark.slow
def test_emergence_benchmark_smoke(tmp_path):
  root = tmp_path / "runs"
  out = tmp_path / "results"
  cmd = [sys.executable, os.path.join(REPO, "benchmarks", "emergence.py"),
         "--base_config=configs/tiny.py", "--resolution=8", "--settings=default,no_shift",
         "--seeds=0",
         "--gan_steps=3", "--encoder_steps=2", "--segmenter_steps=3", "--segmenter_width=4",
         "--segmenter_levels=2",
         f"--workdir_root={root}", f"--out_dir={out}"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "| (a) default |" in proc.stdout and "| (b) no_shift |" in proc.stdout

  for name in ("emergence.json", "emergence.md", "emergence.png"):
    assert (out / name).is_file() and (out / name).stat().st_size > 0, name
  result = json.loads((out / "emergence.json").read_text())
  assert set(result["settings"]) == {"default", "no_shift"}
  for name, s in result["settings"].items():
    for key in SETTING_KEYS:
      assert key in s, (name, key)
    assert s["seeds"] == [0] and len(s["fg_iou_per_seed"]) == 1
    assert 0.0 <= s["fg_iou"] <= 1.0 and s["fg_iou_std"] == 0.0
    assert 0.0 <= s["detected_fraction"] <= 1.0  # The reference segmenter was plugged in.
  assert result["settings"]["default"]["overrides"] == {}
  assert result["settings"]["no_shift"]["overrides"] == {"perturb.shift": 0.0}
  assert set(result["baselines"]) == {"full_image", "center_prior", "grabcut"}
  assert all(0.0 <= b["fg_iou"] <= 1.0 for b in result["baselines"].values())
  assert 0.0 <= result["supervised_upper_bound"]["fg_iou"] <= 1.0
  assert set(result["checks"]) == {"default_ge_0.75", "default_beats_baselines_by_0.2",
                                   "no_shift_0.3_below_default"}
  assert all(isinstance(v, bool) for v in result["checks"].values())
  for key in ("command", "machine", "date", "seconds"):
    assert key in result
  assert (root / "default" / "seed_0" / "eval" / "metrics.json").is_file()
  assert any(p.suffix == ".npz" for p in (root / "reference_segmenter").iterdir())

  # --reuse: nothing is retrained, the same numbers come back.
  proc = subprocess.run(cmd + ["--reuse"], cwd=REPO, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "reusing" in proc.stdout and "reference segmenter: loaded" in proc.stdout
  again = json.loads((out / "emergence.json").read_text())
  assert again["settings"]["default"]["fg_iou"] == result["settings"]["default"]["fg_iou"]
