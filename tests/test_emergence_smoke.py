"""benchmarks/emergence.py: one setting through the real command (a few steps of the tiny
config; the numbers mean nothing: the result files and the JSON structure are checked), and the
aggregation of several settings and seeds, its checks and its table, in-process."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import emergence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTING_KEYS = ("fg_iou", "fg_iou_per_seed", "fg_iou_std", "miou", "miou_per_seed",
                "pixel_accuracy", "mask_coverage", "mask_binary_fraction", "reference_miou",
                "reference_fg_iou", "detected_fraction", "seeds", "overrides", "seconds")


@pytest.mark.slow
def test_emergence_benchmark_smoke(tmp_path):
  root = tmp_path / "runs"
  out = tmp_path / "results"
  cmd = [sys.executable, "-m", "benchmarks.emergence",
         "--base_config=configs/tiny.py", "--resolution=8", "--settings=default",
         "--seeds=0",
         "--gan_steps=3", "--encoder_steps=2", "--segmenter_steps=3", "--segmenter_width=4",
         "--segmenter_levels=2",
         f"--workdir_root={root}", f"--out_dir={out}"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "| (a) default |" in proc.stdout

  for name in ("emergence.json", "emergence.md", "emergence.png"):
    assert (out / name).is_file() and (out / name).stat().st_size > 0, name
  result = json.loads((out / "emergence.json").read_text())
  assert set(result["settings"]) == {"default"}
  for name, s in result["settings"].items():
    for key in SETTING_KEYS:
      assert key in s, (name, key)
    assert s["seeds"] == [0] and len(s["fg_iou_per_seed"]) == 1
    assert 0.0 <= s["fg_iou"] <= 1.0 and s["fg_iou_std"] == 0.0
    assert 0.0 <= s["detected_fraction"] <= 1.0  # The reference segmenter was plugged in.
  assert result["settings"]["default"]["overrides"] == {}
  assert result["settings"]["default"]["routes"].keys() == {"distilled", "encoder"}
  assert set(result["baselines"]) == {"full_image", "center_prior", "grabcut"}
  assert all(0.0 <= b["fg_iou"] <= 1.0 for b in result["baselines"].values())
  assert 0.0 <= result["supervised_upper_bound"]["fg_iou"] <= 1.0
  assert set(result["checks"]) == {"default_ge_0.75", "default_beats_baselines_by_0.2",
                                   "no_shift_0.3_below_default"}
  assert isinstance(result["checks"]["default_ge_0.75"], bool)
  assert result["checks"]["no_shift_0.3_below_default"] is None  # (b) was not run.
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


def _run(fg, encoder, coverage, error=None):
  metrics = None if fg is None else {
      "fg_iou": fg, "miou": fg / 2, "pixel_accuracy": 0.9, "max_fbeta": fg,
      "routes": {"distilled": {"fg_iou": fg}, "encoder": {"fg_iou": encoder}},
      "generated": {"mask_coverage": coverage, "reference_miou": 0.5}}
  return {"metrics": metrics, "timings": {"seconds": 10.0}, "workdir": "w", "reused": False,
          "error": error}


def test_aggregation_checks_and_table_of_several_settings():
  """Means and sample stds over seeds (a diverged seed left out), each route's figures, the
  three checks against the baselines, and one table row per setting."""
  default = emergence.aggregate("default", [0, 1], [_run(0.8, 0.6, 0.3), _run(0.9, 0.5, 0.2)])
  no_shift = emergence.aggregate("no_shift", [0, 1],
                                 [_run(0.3, 0.1, 0.6), _run(None, None, None, "diverged")])
  assert default["fg_iou"] == pytest.approx(0.85)
  assert default["fg_iou_std"] == pytest.approx(0.0707107, rel=1e-5)  # ddof=1
  assert default["routes"]["encoder"]["fg_iou"] == pytest.approx(0.55)
  assert default["mask_coverage"] == pytest.approx(0.25) and default["seconds"] == 20.0
  assert no_shift["fg_iou"] == 0.3 and no_shift["fg_iou_per_seed"] == [0.3, None]
  assert no_shift["fg_iou_std"] == 0.0 and no_shift["errors"] == {"1": "diverged"}
  assert no_shift["overrides"] == {"perturb.shift": 0.0} and no_shift["row"] == "b"
  settings = {"default": default, "no_shift": no_shift}
  baselines = {"center_prior": {"fg_iou": 0.6}, "grabcut": {"fg_iou": 0.7}}
  assert emergence.checks(settings, baselines) == {
      "default_ge_0.75": True, "default_beats_baselines_by_0.2": False,
      "no_shift_0.3_below_default": True}
  assert emergence.checks(settings, {"grabcut": {"fg_iou": 0.6}})[
      "default_beats_baselines_by_0.2"] is True
  table = emergence.markdown_table({"settings": settings, "baselines": baselines})
  rows = table.splitlines()
  assert rows[2].startswith("| (a) default | 0.850 ± 0.071 | 0.800 (s0), 0.900 (s1) |")
  assert rows[3].startswith("| (b) no_shift | 0.300 ± 0.000 | 0.300 (s0), failed (s1) |")
  assert rows[4].startswith("| baseline: center_prior | 0.600 |")
