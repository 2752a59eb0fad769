"""The console's ETA against the time a progressive run really took to finish.

  python -m benchmarks.eta                 # tiny widths, 8 -> 16 -> 32 px, 2,500 iterations

Runs ``main.py --mode=train`` on ``configs/tiny.py`` grown over three resolutions, stamps every
console progress line as it arrives, and compares at each line the ETA shown (per stage,
later stages FLOP-scaled) and the naive one (steps left x the latest step time) with the
seconds the run really went on for after that line (to its last progress line). Writes
``benchmarks/results/eta.json``.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

LINE = re.compile(r"GAN step (\d+)/(\d+)\s+px (\d+).*?([\d.]+) img/s\s+ETA (\S+)")


def seconds(text: str) -> float:
  """'1h09m' / '19m51s' / '14s' -> seconds."""
  h = re.search(r"(\d+)h", text)
  m = re.search(r"(\d+)m", text)
  s = re.search(r"(\d+)s", text)
  return sum(int(x.group(1)) * f for x, f in ((h, 3600), (m, 60), (s, 1)) if x)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--phase_images", type=int, default=4000)
  p.add_argument("--max_steps", type=int, default=2500)
  p.add_argument("--batch", type=int, default=8, help="the same at every resolution")
  p.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "eta.json"))
  args = p.parse_args(argv)
  from benchmarks.common import machine  # pylint: disable=g-import-not-at-top

  workdir = tempfile.mkdtemp(prefix="eta_")
  command = [
    sys.executable,
    os.path.join(REPO, "main.py"),
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--config.train.start_resolution=8",
    "--config.train.resolution=32",
    "--config.model.channels=(16,16,8,8)",
    f"--config.train.phase_images={args.phase_images}",
    f"--config.train.max_steps={args.max_steps}",
    "--config.train.log_every_steps=50",
    f"--config.train.batch_size={args.batch}",
    "--config.train.batch_sizes=",
    "--config.train.sample_every_steps=100000",
    "--config.train.checkpoint_every_steps=100000",
  ]
  start = time.time()
  proc = subprocess.Popen(
    command,
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env=dict(os.environ, PYTHONUNBUFFERED="1"),
  )
  points = []
  for line in proc.stdout:
    m = LINE.search(line)
    if m:
      step, total, px, img_s, eta = m.groups()
      points.append(
        {
          "t": time.time() - start,
          "step": int(step),
          "px": int(px),
          "eta": seconds(eta),
          "scaled": "FLOP-scaled" in line,
          "naive": (int(total) - int(step)) * args.batch / float(img_s),
        }
      )
  if proc.wait():
    raise SystemExit(f"the run failed with exit status {proc.returncode}")
  end = points[-1]["t"]
  for pt in points:
    pt["real"] = end - pt["t"]
  stage_rows = []
  for px in sorted({pt["px"] for pt in points}):
    first = next(pt for pt in points if pt["px"] == px)  # The first line of each stage.
    stage_rows.append(
      {
        k: round(first[k], 1) if isinstance(first[k], float) else first[k]
        for k in ("px", "step", "t", "eta", "naive", "real", "scaled")
      }
    )
  result = {
    "stages": stage_rows,
    "points": [
      {k: round(v, 2) if isinstance(v, float) else v for k, v in pt.items()} for pt in points
    ],
    "total_seconds": round(end, 1),
    "command": " ".join(["python -m benchmarks.eta"] + list(argv or sys.argv[1:])),
    "run": " ".join(command[1:]).replace(workdir, "TMP"),
    "machine": machine(),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  os.makedirs(os.path.dirname(args.json), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps({k: result[k] for k in ("stages", "total_seconds")}, indent=1))
  return result


if __name__ == "__main__":
  main()
