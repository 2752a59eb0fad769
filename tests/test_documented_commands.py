"""Every benchmark entry point that README.md and docs/ give runs as written, in its smallest
form, from the repository root, so that moving or renaming a module cannot break them unseen.

Entry points that need what CI does not have (the official code and a torch venv, a trained GAN,
minutes of training) run with ``--help``, which still imports the module as ``python -m`` does;
``benchmarks.compare_reference`` runs whole, with a stand-in for the official code's timing
harness and the smallest model of ours (slow: half a minute, most of it one compile); the rest
takes a few seconds.
"""

import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))

# Each documented `python -m MODULE`, with the arguments of its smallest run (relative paths from
# the repository root; {tmp} is the test's temporary folder).
SMALLEST = {
  "benchmarks.dataset_baselines": [
    "--resolution=32",
    "--num_examples=4",
    "--json={tmp}/baselines.json",
  ],
  "benchmarks.input_pipeline": [
    "--resolution=16",
    "--batch=4",
    "--steps=2",
    "--warmup=1",
    "--synthetic_examples=16",
    "--folder_images=8",
    "--json={tmp}/pipeline.json",
  ],
  "benchmarks.emergence": ["--quick", "--dry_run"],
  # Its real run lowers car.py's training step at 64 and 128 px: half a minute here.
  "benchmarks.device.gpu_summary": ["--help"],
  # With the TensorFlow stand-in: test_no_tf_launch_runs_a_module below.
  "benchmarks.device.no_tf_launch": ["-m", "benchmarks.input_pipeline", "--help"],
  # Run whole by test_emergence_smoke.py (slow) and below (compare_reference -> throughput).
  "benchmarks.device.scale": ["--help"],
  "benchmarks.throughput": ["--help"],
  "benchmarks.compare_reference": ["--help"],
  # Need the official code and a torch venv.
  "benchmarks.official_parity": ["--help"],
  # Need a trained GAN, or minutes of training.
  "benchmarks.encoder_choices": ["--help"],
  "benchmarks.segmenter_choices": ["--help"],
  "benchmarks.fault_injection": ["--help"],
  # The FID network on hundreds of images (minutes); the reference needs a torch venv.
  "benchmarks.fid_floor": ["--help"],
  "benchmarks.fid_reference": ["--help"],
  # Trains a progressive run for minutes.
  "benchmarks.eta": ["--help"],
  # Compiles the step and its parts twice (45 s on configs/tiny.py; minutes on car.py).
  "benchmarks.step_memory": ["--help"],
  # Trains configs/tiny.py a dozen times (3 minutes); its cases run in test_reliability.py.
  "benchmarks.run_folder_faults": ["--help"],
  # Saves car.py's initial state (1.1 GB) several times.
  "benchmarks.checkpoint_hashing": ["--help"],
  # Compiles and trains four times (a minute on configs/tiny.py).
  "benchmarks.loop_overhead": ["--help"],
  "benchmarks.refusal_table": ["--cases=workdir is a file"],
}
SUBCOMMANDS = {
  "benchmarks.official_parity": ("fixture", "behaviour", "faults"),
  "benchmarks.device.scale": ("drive", "summarize"),
}


def _documented_modules():
  found = set()
  for path in DOCS:
    with open(path) as f:
      found.update(re.findall(r"python3? -m (benchmarks(?:\.\w+)+)", f.read()))
  return found


def test_every_documented_benchmark_has_a_smallest_form():
  documented = _documented_modules()
  assert "benchmarks.throughput" in documented and "benchmarks.compare_reference" in documented
  assert not documented - set(SMALLEST), (
    f"documented but not run by this test: {sorted(documented - set(SMALLEST))}"
  )


def test_modules_that_scripts_launch_exist():
  """The `-m MODULE` of every shell script and of every benchmark's subprocess command."""
  launched = set()
  for path in glob.glob(os.path.join(REPO, "benchmarks", "**", "*.sh"), recursive=True):
    with open(path) as f:
      launched.update(re.findall(r"-m (benchmarks(?:\.\w+)+)", f.read()))
    assert subprocess.run(["bash", "-n", path]).returncode == 0, path
  for path in glob.glob(os.path.join(REPO, "benchmarks", "**", "*.py"), recursive=True):
    with open(path) as f:
      launched.update(re.findall(r"\"-m\", \"(benchmarks(?:\.\w+)+)\"", f.read()))
  assert {
    "benchmarks.throughput",
    "benchmarks.emergence",
    "benchmarks.device.no_tf_launch",
  } <= launched
  sys.path.insert(0, REPO)
  try:
    missing = [m for m in sorted(launched) if importlib.util.find_spec(m) is None]
  finally:
    sys.path.remove(REPO)
  assert not missing


def _run(args, tmp_path, timeout=300):
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  proc = subprocess.run(
    [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
  return proc


@pytest.mark.parametrize("module", sorted(SMALLEST))
def test_documented_benchmark_runs(module, tmp_path):
  _run([module] + SMALLEST[module], tmp_path)
  for sub in SUBCOMMANDS.get(module, ()):
    _run([module, sub, "--help"], tmp_path)


_FAKE_REF_BENCH = """
import sys
print("official: warming up")
print("ref_img_per_s=2.5 median_step_s=0.8")
print("gemm 64: 1.0 GFLOP/s")
"""


@pytest.mark.slow
def test_compare_reference_runs_ours_as_a_module_on_the_documented_config(tmp_path, monkeypatch):
  """The documented command, with a stand-in for the official code's timer: ours is
  `python -m benchmarks.throughput --config=configs/car.py` from the repository root, which must
  run though LSUN is not prepared here (synthetic batches of car.py's shape, said in a line).
  Only the model is made tiny, by arguments added to the command compare_reference built."""
  from benchmarks import compare_reference  # pylint: disable=import-outside-toplevel

  ref_bench = tmp_path / "ref_bench.py"
  ref_bench.write_text(_FAKE_REF_BENCH)
  mirror = tmp_path / "mirror.git"
  mirror.mkdir()
  out = tmp_path / "compare.json"
  real_run, ours = subprocess.run, []

  def run(cmd, **kwargs):
    if "benchmarks.throughput" not in cmd:
      return real_run(cmd, **kwargs)
    assert cmd[1:3] == ["-m", "benchmarks.throughput"] and kwargs["cwd"] == REPO
    cmd = cmd + [
      "--config.model.channels=(8,8,8)",
      "--config.data.data_dir=" + str(tmp_path),
      "--matmul_size=64",
      "--matmul_reps=1",
      "--pipeline_batches=1",
      "--pipeline_warmup=0",
      "--distinct_batches=1",
    ]
    proc = real_run(cmd, **dict(kwargs, check=False, capture_output=True, text=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours.append(proc.stdout)
    return proc

  monkeypatch.setattr(compare_reference.subprocess, "run", run)
  monkeypatch.setattr(
    sys,
    "argv",
    [
      "compare_reference",
      f"--mirror={mirror}",
      f"--torch_python={sys.executable}",
      f"--ref_bench={ref_bench}",
      "--setting=16:2",
      "--steps=1",
      "--warmup=0",
      f"--json={out}",
    ],
  )
  compare_reference.main()
  assert len(ours) == 1
  assert "data: lsun/car is not available offline" in ours[0]
  assert "fell back to the synthetic dataset" in ours[0]
  (row,) = json.loads(out.read_text())["results"]
  assert (row["resolution"], row["batch"], row["theirs_images_per_s"]) == (16, 2, 2.5)
  assert row["ratio_ours_over_theirs"] == pytest.approx(row["ours_images_per_s"] / 2.5)
  assert row["ours_images_per_s"] > 0
  assert row["ours_command"].startswith("-m benchmarks.throughput --config=configs/car.py")


def test_compare_reference_refuses_missing_inputs_in_one_line(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.compare_reference",
      f"--mirror={tmp_path}",
      f"--torch_python={sys.executable}",
      f"--ref_bench={tmp_path}/nope.py",
      f"--json={tmp_path}/x.json",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 2
  assert "--ref_bench=" in proc.stderr and "is not a file" in proc.stderr


def test_no_tf_launch_runs_a_module(tmp_path):
  """benchmarks/device/no_tf_launch.py -m MODULE, as the GPU scripts call it, with the
  TensorFlow stand-in forced: the module gets its own arguments."""
  env = dict(os.environ, FORCE_TF_STUB="1")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.device.no_tf_launch",
      "-m",
      "benchmarks.dataset_baselines",
      "--resolution=32",
      "--num_examples=4",
      f"--json={tmp_path}/baselines.json",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "TensorFlow stand-in" in proc.stdout
  assert json.loads((tmp_path / "baselines.json").read_text())["num_examples"] == 4
