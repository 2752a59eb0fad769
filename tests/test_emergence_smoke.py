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

SETTING_KEYS = (
  "fg_iou",
  "fg_iou_per_seed",
  "fg_iou_std",
  "miou",
  "miou_per_seed",
  "pixel_accuracy",
  "mask_coverage",
  "mask_binary_fraction",
  "reference_miou",
  "reference_fg_iou",
  "detected_fraction",
  "seeds",
  "overrides",
  "seconds",
)


@pytest.mark.slow
def test_emergence_benchmark_smoke(tmp_path):
  root = tmp_path / "runs"
  out = tmp_path / "results"
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.emergence",
    "--base_config=configs/tiny.py",
    "--resolution=8",
    "--settings=default",
    "--seeds=0",
    "--gan_steps=3",
    "--encoder_steps=2",
    "--segmenter_steps=3",
    "--segmenter_width=4",
    "--segmenter_levels=2",
    f"--workdir_root={root}",
    f"--out_dir={out}",
  ]
  proc = subprocess.run(
    cmd,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
  )
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
  assert set(result["checks"]) == {
    "default_ge_0.75",
    "default_beats_baselines_by_0.2",
    "no_shift_0.3_below_default",
  }
  assert isinstance(result["checks"]["default_ge_0.75"], bool)
  assert result["checks"]["no_shift_0.3_below_default"] is None  # (b) was not run.
  for key in ("command", "machine", "date", "seconds"):
    assert key in result
  assert (root / "default" / "seed_0" / "eval" / "metrics.json").is_file()
  assert any(p.suffix == ".npz" for p in (root / "reference_segmenter").iterdir())

  # --reuse: nothing is retrained, the same numbers come back.
  proc = subprocess.run(
    cmd + ["--reuse"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "reusing" in proc.stdout and "reference segmenter: loaded" in proc.stdout
  again = json.loads((out / "emergence.json").read_text())
  assert again["settings"]["default"]["fg_iou"] == result["settings"]["default"]["fg_iou"]


def _run(fg, encoder, coverage, error=None):
  metrics = (
    None
    if fg is None
    else {
      "fg_iou": fg,
      "miou": fg / 2,
      "pixel_accuracy": 0.9,
      "max_fbeta": fg,
      "routes": {"distilled": {"fg_iou": fg}, "encoder": {"fg_iou": encoder}},
      "generated": {"mask_coverage": coverage, "reference_miou": 0.5},
    }
  )
  return {
    "metrics": metrics,
    "timings": {"seconds": 10.0},
    "workdir": "w",
    "reused": False,
    "error": error,
  }


def test_aggregation_checks_and_table_of_several_settings():
  """Means and sample stds over seeds (a diverged seed left out), each route's figures, the
  three checks against the baselines, and one table row per setting."""
  default = emergence.aggregate("default", [0, 1], [_run(0.8, 0.6, 0.3), _run(0.9, 0.5, 0.2)])
  no_shift = emergence.aggregate(
    "no_shift", [0, 1], [_run(0.3, 0.1, 0.6), _run(None, None, None, "diverged")]
  )
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
    "default_ge_0.75": True,
    "default_beats_baselines_by_0.2": False,
    "no_shift_0.3_below_default": True,
  }
  assert (
    emergence.checks(settings, {"grabcut": {"fg_iou": 0.6}})["default_beats_baselines_by_0.2"]
    is True
  )
  table = emergence.markdown_table({"settings": settings, "baselines": baselines})
  rows = table.splitlines()
  assert rows[2].startswith("| (a) default | 0.850 ± 0.071 | 0.800 (s0), 0.900 (s1) |")
  assert rows[3].startswith("| (b) no_shift | 0.300 ± 0.000 | 0.300 (s0), failed (s1) |")
  assert rows[4].startswith("| baseline: center_prior | 0.600 |")


# ------------------------------------------------------------------------ the scale experiment


@pytest.mark.slow
def test_scale_dry_run_through_every_stage_and_the_summarizer(tmp_path):
  """benchmarks/device/scale.py's dry run (configs/tiny.py at 8 px, the same programs as the
  emergence smoke test above, so the compilation cache serves them): two GAN runs in parallel,
  the watcher's statistics along each, the encoder, the distilled segmenter, the evaluation,
  the results files, then the summarizer."""
  from benchmarks.device import scale

  out, runs = tmp_path / "out", tmp_path / "runs"
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.device.scale",
    "drive",
    "--dry_run",
    "--runs=a_seed0,a_seed1",
    f"--out={out}",
    f"--runs_dir={runs}",
  ]
  proc = subprocess.run(
    cmd,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert sorted(p.name for p in out.iterdir()) == [
    "log.txt",
    "scale.json",
    "scale.md",
    "scale_grid_a_seed0.png",
  ]
  result = json.loads((out / "scale.json").read_text())
  assert [r["name"] for r in result["runs"]] == ["a_seed0", "a_seed1"]
  for r in result["runs"]:
    assert r["status"] == "evaluated" and r["exit_code"] == 0, r
    assert r["gan"]["step"] == 6 and r["gan"]["images_seen"] == 48  # tiny: batch 8
    assert [p["step"] for p in r["stats"]] == [2, 4, 6]  # Every checkpoint (dry run: no gap).
    for p in r["stats"]:
      for key in (
        "mask_coverage",
        "binarized_coverage_std",
        "centroid_spread_px",
        "reference_miou",
        "reference_miou_inverted_mask",
      ):
        assert 0.0 <= p[key] < 8.0, (key, p)
    assert set(r["eval"]["routes"]) == {"distilled", "encoder"}
    assert {"grabcut", "center_prior"} <= set(r["eval"]["baselines"])
    assert r["eval"]["num_images"] == 16 and r["eval"]["gan_step"] == 6
    assert set(r["post"]) == {
      "train_encoder_seconds",
      "train_segmenter_seconds",
      "evaluate_seconds",
    }
  # Different seeds, different generators: the statistics differ.
  assert result["runs"][0]["stats"][-1] != result["runs"][1]["stats"][-1]
  assert 0.0 <= result["reference_segmenter"]["fg_iou"] <= 1.0
  table = (out / "scale.md").read_text()
  assert "| (a) seed 0 | evaluated | 48 |" in table and "| (a) seed 1 | evaluated | 48 |" in table

  results = tmp_path / "results"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.device.scale",
      "summarize",
      f"--dir={out}",
      f"--results={results}",
      "--note=dry run",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(p.name for p in results.iterdir()) == [
    "scale.json",
    "scale.md",
    "scale_grid_a_seed0.png",
  ]
  assert json.loads((results / "scale.json").read_text())["note"] == "dry run"
  assert (results / "scale.md").read_text() == scale.markdown(result)


def test_scale_drops_one_run_at_a_time_and_stops_when_runs_do_not_compete():
  from benchmarks.device import scale

  order = ["r1", "r2", "r3", "r4"]
  # On track: no drop.
  assert scale.drop_decision(order, order, 100.0, 0, 30.0, 3000, None)[0] is None
  # Short of the target: the lowest-priority active run goes, one at a time.
  victim, _, checking = scale.drop_decision(order, order, 10.0, 0, 30.0, 3000, None)
  assert victim == "r4" and checking
  victim, _, _ = scale.drop_decision(["r1", "r2", "r3"], order, 20.0, 0, 30.0, 3000, 10.0)
  assert victim == "r3"  # The last drop doubled run 1's rate: go on.
  # A drop that did not speed run 1 up by 10 %: stop dropping for good.
  victim, reason, checking = scale.drop_decision(["r1", "r2"], order, 21.0, 0, 30.0, 3000, 20.0)
  assert victim is None and not checking and "do not compete" in reason
  # Run 1 is never dropped.
  assert scale.drop_decision(["r1"], order, 1.0, 0, 30.0, 3000, None)[0] is None


def test_scale_reads_run_1s_rate_from_the_progress_lines(tmp_path):
  from benchmarks.device import scale
  from layered_gan_jax import console

  line = console.progress_line(
    "GAN", 400, 100_000, {"critic": -1.5, "coverage": 0.4}, 2558.0, 0.025
  )
  match = scale._STEP.search(f"I1204 18:35:55.5 1 loop.py:107] {line}")
  assert match and match.group(1) == "400" and match.group(2) == "2558"
  log = tmp_path / "run.log"
  log.write_text("GAN step 200/9  1 img/s\npartial")
  tail = scale.Tail(str(log))
  assert tail.lines() == ["GAN step 200/9  1 img/s"]
  with open(log, "a") as f:
    f.write(" line\nnext\n")
  assert tail.lines() == ["partial line", "next"]
  samples = [(0.0, 0), (5.0, 1000), (10.0, 3000), (20.0, 5000)]
  assert scale.measured_rate(samples, 5.0, 15.0) == 4000 / 15.0
  assert scale.measured_rate(samples, 10.0, 15.0) is None  # Spans 10 s only.
