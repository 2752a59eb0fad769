"""The README's main job, timed, with the figures it scores: the source of the README's quick
start table, wall time, FID and KID.

  python -m benchmarks.main_job [--json=benchmarks/results/main_job_metrics.json]
      [--workdir=DIR] [--skip_fid_cost]

Runs the README's command, ``python main.py --config=configs/synthetic.py --workdir=DIR
--mode=pipeline``, in a subprocess on a fresh workdir (default: a temporary folder), and writes
its ``eval/metrics.json`` (every route, the baselines, the generated-mask statistics and
``fid``: FID and KID) with, added, the wall time of the command and of each stage (from the
modification times of the files each stage writes last) and the machine.

The FID network's weights come from this host's cache (``python -m
layered_gan_jax.nets.inception_weights`` puts them there; fetched into a temporary cache, and
timed apart, where absent), but the real images' statistics are computed afresh, as on a new
machine. Unless ``--skip_fid_cost``, the evaluation is then rerun twice on copies of the
finished workdir, with FID (statistics computed afresh again) and with
``--config.eval.fid_samples=0``: the difference is what FID adds to the main job.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks.common import machine  # noqa: E402  pylint: disable=wrong-import-position

CONFIG = "configs/synthetic.py"
# Where each stage of the pipeline writes (the stage ends with the newest file among them).
STAGES = (
  ("train", ("checkpoints", "samples", "events.out.tfevents")),
  ("train_encoder", ("encoder", "encoder_checkpoints")),
  ("train_segmenter", ("segmenter", "segmenter_checkpoints")),
)


def readme_command(workdir: str, *extra: str):
  return [sys.executable, "main.py", f"--config={CONFIG}", f"--workdir={workdir}", *extra]


def newest_mtime(workdir: str, prefixes) -> float:
  newest = 0.0
  for name in os.listdir(workdir):
    if not name.startswith(prefixes):
      continue
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      newest = max(newest, os.path.getmtime(path))
      continue
    for root, _, names in os.walk(path):
      for n in names:
        try:
          newest = max(newest, os.path.getmtime(os.path.join(root, n)))
        except OSError:  # A lease file removed while we walk.
          pass
  return newest


def run(args, env, log_path: str) -> float:
  """Runs a command from the repository root, its output into ``log_path``; its wall time."""
  t = time.time()
  with open(log_path, "w") as log:
    proc = subprocess.run(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  seconds = time.time() - t
  if proc.returncode != 0:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise SystemExit(f"{' '.join(args)} exited with {proc.returncode}:\n{tail}")
  return seconds


def fresh_cache(parent: str, env) -> float:
  """A FID cache with this host's converted weights but no real statistics; the seconds spent
  fetching and converting the weights (0 when the host had them)."""
  from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

  cache = tempfile.mkdtemp(dir=parent, prefix="cache_")
  env["LAYERED_GAN_JAX_CACHE"] = cache
  have = os.path.join(inception_weights.cache_dir(), inception_weights.CONVERTED_NAME)
  if os.path.isfile(have):
    os.symlink(have, os.path.join(cache, inception_weights.CONVERTED_NAME))
    return 0.0
  args = [sys.executable, "-m", "layered_gan_jax.nets.inception_weights"]
  return run(args, env, os.path.join(parent, "fetch.log"))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "main_job_metrics.json")
  )
  p.add_argument("--workdir", default="", help="a new folder to keep; empty: a temporary one")
  p.add_argument("--skip_fid_cost", action="store_true")
  args = p.parse_args(argv)
  parent = tempfile.mkdtemp(prefix="main_job_")
  workdir = args.workdir or os.path.join(parent, "layered_gan")
  if os.path.exists(workdir):
    raise SystemExit(f"error: --workdir={workdir} exists; the main job is timed from scratch")
  env = dict(os.environ)
  started = datetime.datetime.now(datetime.timezone.utc)
  load_before = os.getloadavg()
  fetch_seconds = fresh_cache(parent, env)

  t0 = time.time()
  wall = run(readme_command(workdir, "--mode=pipeline"), env, os.path.join(parent, "main.log"))
  ends = [t0] + [newest_mtime(workdir, prefixes) for _, prefixes in STAGES] + [t0 + wall]
  stages = {name: round(b - a, 1) for (name, _), a, b in zip(STAGES, ends, ends[1:])}
  stages["evaluate"] = round(ends[-1] - ends[-2], 1)
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    result = json.load(f)

  fid_cost = None
  if not args.skip_fid_cost:  # The evaluation alone, with and without FID, on copies.
    seconds = {}
    for name, extra in (("with_fid", ()), ("without_fid", ("--config.eval.fid_samples=0",))):
      copy = os.path.join(parent, name)
      shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("eval"))
      fresh_cache(parent, env)
      cmd = readme_command(copy, "--mode=evaluate", *extra)
      seconds[name] = round(run(cmd, env, os.path.join(parent, f"{name}.log")), 1)
    fid_cost = dict(
      seconds,
      fid_seconds=round(seconds["with_fid"] - seconds["without_fid"], 1),
      how="--mode=evaluate on copies of the finished workdir, one after the other, the real "
      "statistics computed afresh; fid_seconds = with_fid - without_fid",
    )

  result.update(
    wall_seconds=round(wall, 1),
    wall_minutes=round(wall / 60, 1),
    stage_seconds=stages,
    fid_weights_fetch_seconds=round(fetch_seconds, 1),
    fid_cost=fid_cost,
    command=(
      f"python main.py --config={CONFIG} --workdir=/tmp/layered_gan --mode=pipeline "
      "(the README's main job, on a fresh workdir)"
    ),
    benchmark="python -m benchmarks.main_job",
    machine=machine(),
    load_average_before=[round(x, 2) for x in load_before],
    load_average_after=[round(x, 2) for x in os.getloadavg()],
    date=started.isoformat(timespec="seconds"),
  )
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
  print(json.dumps({k: result[k] for k in ("fg_iou", "wall_seconds", "stage_seconds", "fid")}))
  # The caches, logs and copies (and the workdir, when it is a temporary one).
  shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
  main()
