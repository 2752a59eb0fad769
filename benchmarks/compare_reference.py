"""Ours vs the official PyTorch code, same CPU, same architecture (reference widths), same batch,
fp32, measured back to back in one run.

Needs a fetched copy of github adambielski/perturbed-seg (a bare git directory or a checkout)
and a separate virtual environment with torch 2.13.0 CPU:

  python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  git clone --mirror https://github.com/adambielski/perturbed-seg /tmp/perturbed-seg.git
  python -m benchmarks.compare_reference --mirror=/tmp/perturbed-seg.git \
      --torch_python=/tmp/torchvenv/bin/python --setting=32:16 --setting=64:8 \
      --json=benchmarks/results/compare_reference.json

Run it from the repository root.
For each RESOLUTION:BATCH it runs ``python -m benchmarks.throughput --config=configs/car.py`` (ours)
and ``TORCH_PYTHON -m benchmarks.official_timing`` (theirs: the official code loaded from the
mirror and its training loop timed, see ``benchmarks/official_timing.py``) one after the other,
and reports images/s and the ratio. A missing mirror or a python without torch: one line, exit
status 2, before anything runs.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile

from benchmarks import official_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_ours(resolution, batch, steps, warmup, dtype):
  with tempfile.NamedTemporaryFile(suffix=".json") as f:
    # As a module from the repository root: benchmarks.throughput imports benchmarks.common.
    cmd = [
      sys.executable,
      "-m",
      "benchmarks.throughput",
      "--config=configs/car.py",
      f"--resolution={resolution}",
      f"--batch={batch}",
      f"--steps={steps}",
      f"--warmup={warmup}",
      f"--dtype={dtype}",
      f"--json={f.name}",
    ]
    subprocess.run(cmd, cwd=REPO, check=True)
    with open(f.name) as g:
      return json.load(g), " ".join(cmd[1:])


def run_theirs(torch_python, mirror, resolution, batch, steps, warmup):
  cmd = [
    torch_python,
    "-m",
    "benchmarks.official_timing",
    f"--mirror={os.path.abspath(mirror)}",
    f"--resolution={resolution}",
    f"--batch={batch}",
    f"--steps={steps}",
    f"--warmup={warmup}",
    "--gemm",
  ]
  out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
  last = [l for l in out.splitlines() if l.startswith("ref_img_per_s=")][-1]
  fields = dict(kv.split("=") for kv in last.split())
  gemm = re.findall(r"gemm[^\n]*", out)
  return {
    "images_per_s": float(fields["ref_img_per_s"]),
    "median_step_s": float(fields["median_step_s"]),
    "gemm_lines": gemm,
    "tail": out.splitlines()[-12:],
  }, " ".join(cmd[1:])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--mirror", required=True, help="git directory or checkout of perturbed-seg")
  p.add_argument("--torch_python", required=True, help="python of a CPU PyTorch venv")
  p.add_argument("--setting", action="append", default=None, help="RESOLUTION:BATCH")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--json", required=True)
  args = p.parse_args()
  for flag, value, check in (
    ("--mirror", args.mirror, official_code.locate),
    ("--torch_python", args.torch_python, official_code.check_torch_python),
  ):
    try:
      check(value)
    except official_code.SourceError as e:
      print(f"error: {flag}: {e}", file=sys.stderr)
      sys.exit(2)
  results = []
  for setting in args.setting or ["32:16", "64:8"]:
    r, b = (int(x) for x in setting.split(":"))
    ours, ours_cmd = run_ours(r, b, args.steps, args.warmup, "float32")
    theirs, theirs_cmd = run_theirs(args.torch_python, args.mirror, r, b, args.steps, args.warmup)
    row = {
      "resolution": r,
      "batch": b,
      "ours_images_per_s": ours["images_per_s"],
      "theirs_images_per_s": theirs["images_per_s"],
      "ratio_ours_over_theirs": ours["images_per_s"] / theirs["images_per_s"],
      "ours_utilization": ours.get("utilization"),
      "ours_flops_per_iteration": ours.get("flops_per_iteration"),
      "ours_matmul_flops_per_s": ours.get("matmul_flops_per_s"),
      "ours_command": ours_cmd,
      "theirs_command": theirs_cmd,
      "theirs": theirs,
    }
    print(
      f"{r} px batch {b}: ours {row['ours_images_per_s']:.3f} img/s, official "
      f"{row['theirs_images_per_s']:.3f} img/s, ratio {row['ratio_ours_over_theirs']:.2f}x "
      f"(our utilization {row['ours_utilization']:.2f} of matmul FLOP/s)",
      flush=True,
    )
    results.append(row)
  out = {
    "results": results,
    "command": " ".join(sys.argv),
    "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
    f"{os.cpu_count()} CPUs",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
