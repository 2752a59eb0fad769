"""The scale experiment: does segmentation emerge once the generator has seen millions of images?

Several GAN runs share one accelerator, each for the same wall-clock budget, on the embedded
synthetic dataset at 32 px (``configs/synthetic.py``'s data and widths, the reference's batch 64
and lr 1e-3 at 32 px). In order of priority (``RUNS``): (a) at batch 256, seed 0 and seed 1
(the only runs that can reach 2M images in one call: the H200 ran batch 64 at 2,560 img/s per
run beside five others), (a) seed 0, (a) seed 1, (a) growing 8 -> 16 -> 32 px, (a) with
``loss.max_mask_coverage=0.3``, (b) ``perturb.shift=0``, and (a) with a lower mapping-network
lr (a variety remedy beyond the paper). Once run 1's rate is measured, runs are dropped from
the bottom of that list until run 1 can reach ``--target_images`` by the GAN deadline.

Along each run, a watcher computes from the EMA generator of the checkpoints (about every
``--stats_every_images``): mask coverage, binarized coverage std, centroid spread, and the
agreement of the generator's mask with a supervised reference segmenter (reference mIoU, and
with the mask inverted). At the GAN deadline every run is stopped by SIGTERM (a checkpoint is
saved, as on a preemption); each then trains the paper's encoder and the distilled segmenter on
its generator and evaluates both on the synthetic test split with the baselines.

Results are written as they come, under ``--out``: ``scale.json``, ``scale.md``, ``log.txt``
and one sample grid per run marked ``grid`` (``scale_grid_<run>.png``: composite and mask rows
at the start, middle and end of the run). Runs live under ``--runs_dir``.

  bash benchmarks/device/scale.sh                         # on the GPU machine (see there)
  python -m benchmarks.device.scale drive --dry_run --out=/tmp/s --runs_dir=/tmp/s/runs
  python -m benchmarks.device.scale summarize --dir=RETURNED_FILES   # -> benchmarks/results/

Subcommands ``run`` and ``watch`` are what ``drive`` starts, one process each.
"""

import argparse
import dataclasses
import datetime
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET_IMAGES = 2_000_000
STATS_SEED = 2024  # The latents of every statistics point (the same for every checkpoint).
GRID_COLUMNS = 8
RESULTS = os.path.join(REPO, "benchmarks", "results")


@dataclasses.dataclass(frozen=True)
class Run:
  name: str
  title: str
  overrides: Dict
  grid: bool = False


def runs_of(dry_run: bool) -> List[Run]:
  """The runs in order of priority (the last is dropped first)."""
  every = 2 if dry_run else 1954  # 125k images at batch 64.
  grow = (
    {"train.resolution": 16, "train.max_steps": 8, "train.phase_images": 16}
    if dry_run
    else {
      "train.start_resolution": 8,
      "train.batch_sizes": "8:256,16:128,32:64",
      "train.phase_images": 250_000,
      "train.checkpoint_every_steps": every // 2,
      "train.sample_every_steps": every // 2,
    }
  )
  b256 = {
    "train.batch_size": 32 if dry_run else 256,
    "train.checkpoint_every_steps": every if dry_run else every // 4,
    "train.sample_every_steps": every if dry_run else every // 4,
  }
  return [
    Run("a_b256", "(a) batch 256, seed 0", b256, grid=True),
    Run("a_b256_seed1", "(a) batch 256, seed 1", dict(b256, seed=1)),
    Run("a_seed0", "(a) seed 0", {"seed": 0}, grid=True),
    Run("a_seed1", "(a) seed 1", {"seed": 1}),
    Run(
      "a_grow",
      "(a) growing 8 -> 16 -> 32 px" if not dry_run else "(a) growing 8 -> 16 px",
      grow,
      grid=True,
    ),
    Run("a_cap", "(a) max_mask_coverage 0.3", {"loss.max_mask_coverage": 0.3}),
    Run("b_noshift", "(b) shift 0 (control)", {"perturb.shift": 0.0}),
    Run(
      "a_maplr",
      "(a) mapping lr x 0.001 (remedy, not in the paper)",
      {"train.mapping_lr_mult": 0.001},
    ),
  ]


def common_overrides(dry_run: bool) -> Dict:
  if dry_run:  # configs/tiny.py at 8 px: seconds per run on a CPU.
    return {
      "train.start_resolution": 8,
      "train.resolution": 8,
      "train.max_steps": 6,
      "train.log_every_steps": 2,
      "train.checkpoint_every_steps": 2,
      "train.sample_every_steps": 2,
      "train.keep_checkpoints": 1000,
      "encoder.max_steps": 2,
      "segmenter.max_steps": 3,
    }
  # No FID there: the GPU machine reaches no package index, and the network's weights (87 MB)
  # exceed what a device call can carry.
  return {
    "train.batch_size": 64,
    "train.lr": 1e-3,
    "train.max_steps": 100_000_000,
    "train.log_every_steps": 200,
    "train.checkpoint_every_steps": 1954,
    "train.sample_every_steps": 1954,
    "train.keep_checkpoints": 1000,
    "eval.fid_samples": 0,
  }


def base_config_path(dry_run: bool) -> str:
  return os.path.join(REPO, "configs", "tiny.py" if dry_run else "synthetic.py")


def build_config(dry_run: bool, run: Run):
  from benchmarks.common import apply_overrides, load_config  # pylint: disable=g-import-not-at-top

  config = load_config(base_config_path(dry_run))[0]
  apply_overrides(config, common_overrides(dry_run))
  overrides = dict(run.overrides)
  seed = overrides.pop("seed", None)
  apply_overrides(config, overrides)
  if seed is not None:
    config.seed = seed
  return config


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: str, obj) -> None:
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  files.write_json(path, obj)


def _read_json(path: str) -> Optional[Dict]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _read_jsonl(path: str) -> List[Dict]:
  try:
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]
  except (OSError, ValueError):
    return []


# ------------------------------------------------------------------------------------ run


def run_main(args) -> None:
  """One run in this process: the GAN until SIGTERM (or its max_steps), then the encoder, the
  distilled segmenter and the evaluation. Writes ``gan_done.json`` and ``post.json``."""
  # pylint: disable=g-import-not-at-top
  from absl import logging

  import main as entry
  from layered_gan_jax import console
  from layered_gan_jax.evaluation import evaluate
  from layered_gan_jax.training import loading

  # pylint: enable=g-import-not-at-top
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  console.quiet_library_logs(verbose=False)
  run = {r.name: r for r in runs_of(args.dry_run)}[args.name]
  config = build_config(args.dry_run, run)
  workdir = os.path.join(args.runs_dir, run.name)
  t = time.time()
  finished = entry.run(config, workdir, "train")
  ckpt = loading.gan_checkpointer(workdir, int(config.train.keep_checkpoints))
  step = ckpt.latest_step()
  meta = ckpt.read_json(step, "meta") if step is not None else {}
  ckpt.close()
  _write_json(
    os.path.join(workdir, "gan_done.json"),
    {
      "finished_max_steps": bool(finished),
      "step": step,
      "images_seen": meta.get("images_seen"),
      "resolution": meta.get("resolution"),
      "seconds": round(time.time() - t, 1),
      "date": _now(),
    },
  )
  if step is None:
    return
  timings = {}
  for mode in ("train_encoder", "train_segmenter"):
    t = time.time()
    entry.run(config, workdir, mode)
    timings[f"{mode}_seconds"] = round(time.time() - t, 1)
    _write_json(os.path.join(workdir, "post.json"), timings)
  t = time.time()
  evaluate.evaluate(config, workdir)
  timings["evaluate_seconds"] = round(time.time() - t, 1)
  _write_json(os.path.join(workdir, "post.json"), timings)


# ------------------------------------------------------------------------------------ watch


def reference_segmenter(args, resolution: int, eval_images: int):
  """The supervised reference segmenter (cached under ``--runs_dir``), and its test scores."""
  from benchmarks import emergence  # pylint: disable=g-import-not-at-top

  ref = argparse.Namespace(
    segmenter_steps=args.ref_steps,
    segmenter_width=args.ref_width,
    segmenter_levels=args.ref_levels,
    segmenter_seed=0,
    workdir_root=args.runs_dir,
  )
  return emergence.get_reference_segmenter(ref, resolution, eval_images)


def _grid_png(points: List[Dict], path: str) -> None:
  """Composite and mask rows of the first, middle and last statistics point."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from layered_gan_jax import visualization  # pylint: disable=g-import-not-at-top

  chosen = [points[0], points[len(points) // 2], points[-1]] if len(points) > 2 else points
  size = max(p["composites"].shape[1] for p in chosen)

  def up(images):
    return np.stack(
      [np.asarray(Image.fromarray(im).resize((size, size), Image.NEAREST)) for im in images]
    )

  rows = []
  for p in chosen:
    rows.append(up(visualization.to_uint8(p["composites"])))
    rows.append(up(visualization.to_uint8(p["masks"][..., None], (0.0, 1.0))))
  visualization.save_png(path, visualization.grid(rows))


def watch_main(args) -> None:
  """Statistics of the EMA generator along every run, as its checkpoints appear."""
  # pylint: disable=g-import-not-at-top
  from absl import logging

  from layered_gan_jax.evaluation import evaluate
  from layered_gan_jax.nets import sampler
  from layered_gan_jax.run import layout
  from layered_gan_jax.training import loading

  # pylint: enable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # Not every save in flight that a poll sees.
  deadline = time.time() + args.seconds
  runs = runs_of(args.dry_run)
  if args.runs:
    runs = [r for r in runs if r.name in args.runs.split(",")]
  resolution = max(int(build_config(args.dry_run, r).train.resolution) for r in runs)
  segmenter, upper_bound = reference_segmenter(args, resolution, args.ref_eval_images)
  _write_json(os.path.join(args.runs_dir, "reference_segmenter.json"), upper_bound)
  done, last_images, grids = set(), {}, {}
  while len(done) < len(runs) and time.time() < deadline:
    busy = False
    for run in runs:
      if run.name in done:
        continue
      workdir = os.path.join(args.runs_dir, run.name)
      gan_done = _read_json(os.path.join(workdir, "gan_done.json"))
      ended = gan_done is not None or os.path.exists(os.path.join(workdir, "dropped.json"))
      if not os.path.isdir(os.path.join(workdir, layout.GAN_DIR)):
        if ended:
          done.add(run.name)
        continue
      ckpt = loading.gan_checkpointer(workdir, 100_000)
      previous = last_images.get(run.name)  # (step, images) of the last point.
      steps = [s for s in ckpt.all_steps() if previous is None or s > previous[0]]
      chosen = None
      for i, step in enumerate(steps):  # The first checkpoint that is due, or the final one.
        images = int(ckpt.read_json(step, "meta")["images_seen"])
        final = ended and i == len(steps) - 1
        if previous is None or images - previous[1] >= args.stats_every_images or final:
          chosen = (step, images)
          break
      ckpt.close()
      if chosen is None:
        if ended:
          done.add(run.name)
        continue
      step, images = chosen
      busy = True
      t = time.time()
      gan = loading.load_gan(workdir, step=step)
      masks, composites = sampler.masks_and_composites(gan, args.num_generated, STATS_SEED)
      stats = evaluate.sample_mask_statistics(masks, composites, segmenter)
      point = {
        "step": step,
        "images_seen": images,
        "resolution": gan.resolution,
        "alpha": gan.alpha,
        "seconds": round(time.time() - t, 2),
        "date": _now(),
        **stats,
      }
      with open(os.path.join(workdir, "stats.jsonl"), "a") as f:
        f.write(json.dumps(point) + "\n")
      last_images[run.name] = (step, images)
      if run.grid:
        grids.setdefault(run.name, []).append(
          {"composites": composites[:GRID_COLUMNS], "masks": masks[:GRID_COLUMNS]}
        )
        _grid_png(grids[run.name], os.path.join(args.out, f"scale_grid_{run.name}.png"))
      print(
        f"[watch] {run.name} step {step} ({images} images): coverage "
        f"{stats['mask_coverage']:.3f}, reference mIoU {stats['reference_miou']:.3f} "
        f"({point['seconds']:.1f} s)",
        flush=True,
      )
    if not busy:
      time.sleep(args.poll)


# ------------------------------------------------------------------------------------ drive

_STEP = re.compile(r"GAN step (\d+)/\d+.*?(\d+) img/s")


class Tail:
  """New complete lines of a growing log file."""

  def __init__(self, path: str):
    self.path, self.offset, self.rest = path, 0, ""

  def lines(self) -> List[str]:
    try:
      with open(self.path, errors="replace") as f:
        f.seek(self.offset)
        text = f.read()
        self.offset = f.tell()
    except OSError:
      return []
    text = self.rest + text
    *complete, self.rest = text.split("\n")
    return complete


def measured_rate(samples: List[tuple], since: float, min_span: float) -> Optional[float]:
  """Images per second from ``(time, images)`` samples taken at or after ``since``, if they
  span at least ``min_span`` seconds."""
  recent = [s for s in samples if s[0] >= since]
  if len(recent) < 2 or recent[-1][0] - recent[0][0] < min_span:
    return None
  return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


def projected_images(images_now: int, rate: float, seconds_left: float) -> float:
  return images_now + rate * max(seconds_left, 0.0)


MIN_SPEEDUP = 1.1  # A drop that speeds run 1 up less than this shows that the runs don't compete.


def drop_decision(
  active: List[str],
  priority: List[str],
  rate: float,
  images_now: int,
  seconds_left: float,
  target: int,
  rate_before_last_drop: Optional[float],
) -> tuple:
  """``(run to drop or None, reason, keep checking)`` for run 1 (``priority[0]``, never
  dropped) to reach ``target`` images: the lowest-priority active run, one at a time, while
  run 1 falls short; no more drops once one failed to speed run 1 up by ``MIN_SPEEDUP`` (the
  runs then share the accelerator without slowing each other, so dropping only loses runs)."""
  projected = projected_images(images_now, rate, seconds_left)
  if projected >= target:
    return None, "on track", True
  if rate_before_last_drop is not None and rate < MIN_SPEEDUP * rate_before_last_drop:
    return (
      None,
      (
        f"the last drop moved run 1 from {rate_before_last_drop:.0f} to {rate:.0f} "
        "img/s: the runs do not compete, no more drops"
      ),
      False,
    )
  lower = [n for n in priority[1:] if n in active]
  if not lower:
    return None, "run 1 runs alone", False
  return lower[-1], f"{projected:.0f} images projected, below {target}", True


def _tail_text(path: str, lines: int) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


def _fmt(value, digits: int = 3) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def _millions(images) -> str:
  if images is None:
    return "–"
  return f"{images / 1e6:.2f}M" if images >= 100_000 else f"{images:,}"


def markdown(result: Dict) -> str:
  """The summary table (one row per run, at its end), then each run's curve."""
  lines = [
    f"# Scale experiment ({result['device']})",
    "",
    f"Target: run 1 at {result['target_images'] / 1e6:g}M images. {result['summary']}",
    "",
    "| run | status | images seen | img/s | mask coverage | bin. coverage std "
    "| centroid spread (px) | reference mIoU | inverted | distilled fg IoU "
    "| encoder fg IoU | GrabCut | centred prior |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["runs"]:
    last = r["stats"][-1] if r["stats"] else {}
    routes = (r.get("eval") or {}).get("routes") or {}
    base = (r.get("eval") or {}).get("baselines") or {}
    lines.append(
      f"| {r['title']} | {r['status']} | {_millions(r.get('images_seen'))} "
      f"| {_fmt(r.get('images_per_s'), 0)} | {_fmt(last.get('mask_coverage'))} "
      f"| {_fmt(last.get('binarized_coverage_std'))} "
      f"| {_fmt(last.get('centroid_spread_px'), 2)} | {_fmt(last.get('reference_miou'))} "
      f"| {_fmt(last.get('reference_miou_inverted_mask'))} "
      f"| {_fmt((routes.get('distilled') or {}).get('fg_iou'))} "
      f"| {_fmt((routes.get('encoder') or {}).get('fg_iou'))} "
      f"| {_fmt((base.get('grabcut') or {}).get('fg_iou'))} "
      f"| {_fmt((base.get('center_prior') or {}).get('fg_iou'))} |"
    )
  ub = result.get("reference_segmenter") or {}
  if ub:
    lines += [
      "",
      f"Reference segmenter (supervised, on the test split): fg IoU {_fmt(ub.get('fg_iou'))}.",
    ]
  for r in result["runs"]:
    if not r["stats"]:
      continue
    lines += [
      "",
      f"{r['title']}, along the run (EMA generator, {r['stats'][0]['num_generated']} "
      "samples per point):",
      "",
      "| images seen | px | mask coverage | bin. coverage std | centroid spread (px) "
      "| reference mIoU | inverted |",
      "|---|---|---|---|---|---|---|",
    ]
    for p in r["stats"]:
      lines.append(
        f"| {_millions(p['images_seen'])} | {p['resolution']} "
        f"| {_fmt(p['mask_coverage'])} | {_fmt(p['binarized_coverage_std'])} "
        f"| {_fmt(p['centroid_spread_px'], 2)} | {_fmt(p['reference_miou'])} "
        f"| {_fmt(p['reference_miou_inverted_mask'])} |"
      )
  lines += [
    "",
    f"Command: `{result['command']}`; {result['date']}; "
    f"{result['seconds']:.0f} s; {result['machine']}",
  ]
  return "\n".join(lines) + "\n"


def assemble(args, runs: List[Run], state: Dict) -> Dict:
  """``scale.json``'s content from the run folders and the driver's own records."""
  out_runs = []
  for i, run in enumerate(runs):
    workdir = os.path.join(args.runs_dir, run.name)
    s = state["runs"][run.name]
    gan = _read_json(os.path.join(workdir, "gan_done.json"))
    metrics = _read_json(os.path.join(workdir, "eval", "metrics.json"))
    post = _read_json(os.path.join(workdir, "post.json"))
    stats = _read_jsonl(os.path.join(workdir, "stats.jsonl"))
    status = s["status"]
    if status == "started" and gan:
      status = "evaluated" if metrics else "gan done"
    images = (gan or {}).get("images_seen")
    if images is None and stats:
      images = stats[-1]["images_seen"]
    eval_part = None
    if metrics:
      eval_part = {
        "routes": {
          k: {"fg_iou": v.get("fg_iou"), "miou": v.get("miou")}
          for k, v in metrics.get("routes", {}).items()
        },
        "baselines": {
          k: {"fg_iou": v.get("fg_iou"), "miou": v.get("miou")}
          for k, v in metrics.get("baselines", {}).items()
        },
        "generated": metrics.get("generated"),
        "num_images": metrics.get("num_images"),
        "gan_step": metrics.get("gan_step"),
      }
    out_runs.append(
      {
        "priority": i + 1,
        "name": run.name,
        "title": run.title,
        "overrides": run.overrides,
        "status": status,
        "images_seen": images,
        "images_per_s": s.get("images_per_s"),
        "last_log": s.get("last_log"),
        "exit_code": s.get("exit_code"),
        "gan": gan,
        "post": post,
        "stats": stats,
        "eval": eval_part,
      }
    )
  first = out_runs[0] if out_runs else {}
  reached = first.get("images_seen")
  summary = (
    "run 1 saw " + _millions(reached) + " images"
    if reached is not None
    else "run 1 has no checkpoint yet"
  )
  return {
    "experiment": "scale (issue 30)",
    "device": state["device"],
    "target_images": args.target_images,
    "summary": summary + ".",
    "base_config": os.path.relpath(base_config_path(args.dry_run), REPO),
    "common_overrides": common_overrides(args.dry_run),
    "dry_run": args.dry_run,
    "mps": os.environ.get("SCALE_MPS", "unknown"),
    "budget": {"seconds": args.seconds, "post_seconds": args.post_seconds},
    "decisions": state["decisions"],
    "runs": out_runs,
    "reference_segmenter": _read_json(os.path.join(args.runs_dir, "reference_segmenter.json")),
    "command": state["command"],
    "machine": state["machine"],
    "date": _now(),
    "seconds": round(time.time() - state["t0"], 1),
  }


def write_results(args, runs: List[Run], state: Dict) -> Dict:
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  result = assemble(args, runs, state)
  _write_json(os.path.join(args.out, "scale.json"), result)
  with files.atomic_path(os.path.join(args.out, "scale.md")) as tmp:
    with open(tmp, "w") as f:
      f.write(markdown(result))
  return result


def _spawn(args, sub: List[str], log_path: str) -> subprocess.Popen:
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.device.no_tf_launch",
    os.path.join("benchmarks", "device", "scale.py"),
    *sub,
    f"--runs_dir={args.runs_dir}",
    f"--out={args.out}",
  ]
  if args.dry_run:
    cmd.append("--dry_run")
  log = open(log_path, "w")  # pylint: disable=consider-using-with
  return subprocess.Popen(
    cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1")
  )


def drive_main(args) -> Dict:
  t0 = time.time()
  os.makedirs(args.out, exist_ok=True)
  os.makedirs(args.runs_dir, exist_ok=True)
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  log_path = os.path.join(args.out, "log.txt")
  log_file = open(log_path, "a")  # pylint: disable=consider-using-with

  def log(message: str) -> None:
    line = f"[drive {time.time() - t0:6.1f} s] {message}"
    print(line, flush=True)
    log_file.write(line + "\n")
    log_file.flush()

  runs = runs_of(args.dry_run)
  if args.runs:
    wanted = args.runs.split(",")
    unknown = sorted(set(wanted) - {r.name for r in runs})
    if unknown:
      raise SystemExit(
        f"error: unknown run(s) {unknown}; choose from {', '.join(r.name for r in runs)}"
      )
    runs = [r for r in runs if r.name in wanted]
  for run in runs:  # Every config is checked before anything starts.
    from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

    validate.validate_config(build_config(args.dry_run, run), "train")
  if args.reference_cache:
    shutil.copytree(
      args.reference_cache, os.path.join(args.runs_dir, "reference_segmenter"), dirs_exist_ok=True
    )
  from benchmarks.common import machine  # pylint: disable=g-import-not-at-top

  state = {
    "t0": t0,
    "device": args.device,
    "machine": machine(),
    "decisions": [],
    "command": shlex.join(["python", "-m", "benchmarks.device.scale"] + sys.argv[1:]),
    "runs": {r.name: {"status": "started"} for r in runs},
  }
  gan_deadline = t0 + args.seconds - args.post_seconds
  end = t0 + args.seconds
  log(
    f"runs {[r.name for r in runs]}; GAN deadline at {args.seconds - args.post_seconds} s, "
    f"end at {args.seconds} s; target {args.target_images} images for run 1"
  )
  names = ["--runs=" + ",".join(r.name for r in runs)]
  watcher = _spawn(
    args,
    [
      "watch",
      f"--seconds={args.seconds}",
      *names,
      f"--stats_every_images={args.stats_every_images}",
      f"--num_generated={args.num_generated}",
      f"--ref_steps={args.ref_steps}",
      f"--ref_width={args.ref_width}",
      f"--ref_levels={args.ref_levels}",
      f"--ref_eval_images={args.ref_eval_images}",
    ],
    os.path.join(args.runs_dir, "watch.log"),
  )
  procs, tails, samples = {}, {}, {}
  for run in runs:
    procs[run.name] = _spawn(
      args, ["run", f"--name={run.name}"], os.path.join(args.runs_dir, f"{run.name}.log")
    )
    tails[run.name] = Tail(os.path.join(args.runs_dir, f"{run.name}.log"))
    samples[run.name] = []
  priority = [r.name for r in runs]
  batch = {r.name: int(build_config(args.dry_run, r).train.batch_size) for r in runs}
  stopped, last_check, last_write = set(), None, 0.0
  checking, rate_before_drop = True, None
  while time.time() < end:
    now = time.time()
    for name, tail in tails.items():
      for line in tail.lines():
        match = _STEP.search(line)
        if match:
          step = int(match.group(1))
          samples[name].append((now, step * batch[name]))
          state["runs"][name].update(images_per_s=float(match.group(2)), last_log=line.strip())
    active = [n for n, p in procs.items() if p.poll() is None]
    for name, p in procs.items():
      if p.poll() is not None and "exit_code" not in state["runs"][name]:
        state["runs"][name]["exit_code"] = p.returncode
        log(f"{name} exited with status {p.returncode}")
    # Rate check: drop the lowest-priority run while run 1 cannot reach the target.
    first = priority[0]
    since = max(last_check or 0.0, (samples[first][0][0] if samples[first] else now) + 1e-6)
    rate = measured_rate(samples[first], since, args.measure_seconds)
    if (
      checking
      and rate is not None
      and first in active
      and now < gan_deadline - args.measure_seconds
    ):
      images_now = samples[first][-1][1]
      active_now = [n for n in active if n not in stopped]
      victim, reason, checking = drop_decision(
        active_now,
        priority,
        rate,
        images_now,
        gan_deadline - now,
        args.target_images,
        rate_before_drop,
      )
      decision = {
        "t": round(now - t0, 1),
        "run1_images": images_now,
        "run1_images_per_s": round(rate, 1),
        "projected": int(projected_images(images_now, rate, gan_deadline - now)),
        "active": active_now,
        "dropped": victim,
        "reason": reason,
      }
      rate_before_drop = rate if victim else None
      if victim:
        procs[victim].kill()
        stopped.add(victim)
        state["runs"][victim]["status"] = "dropped"
        _write_json(os.path.join(args.runs_dir, victim, "dropped.json"), decision)
      log(
        f"run 1: {rate:.0f} img/s with {len(active_now)} runs, "
        f"{decision['projected'] / 1e6:.2f}M images projected: "
        + (f"dropping {victim}" if victim else reason)
      )
      state["decisions"].append(decision)
      last_check = now + 5.0  # Measure afresh, after the change settles.
    if now >= gan_deadline:
      for name in active:
        if name not in stopped and not os.path.exists(
          os.path.join(args.runs_dir, name, "gan_done.json")
        ):
          procs[name].send_signal(signal.SIGTERM)
          stopped.add(name)
          log(f"GAN deadline: SIGTERM to {name}")
    if now - last_write >= args.write_every:
      write_results(args, runs, state)
      last_write = now
    if not active and watcher.poll() is not None:
      break
    time.sleep(args.poll)
  for name, p in list(procs.items()) + [("watch", watcher)]:
    if p.poll() is None:
      p.kill()
      log(f"end of the budget: killed {name}")
      if name in state["runs"]:
        state["runs"][name]["status"] += " (killed at the end)"
  for name in [r.name for r in runs] + ["watch"]:
    log_file.write(f"\n---- last lines of {name}.log\n")
    log_file.write(_tail_text(os.path.join(args.runs_dir, f"{name}.log"), args.log_lines))
  log_file.flush()
  result = write_results(args, runs, state)
  log(f"wrote {args.out}/scale.json and scale.md: {result['summary']}")
  return result


# ------------------------------------------------------------------------------------ summarize


def summarize_main(args) -> Dict:
  """The returned files -> ``benchmarks/results/scale.{json,md}`` and ``scale_grid_*.png``."""
  result = _read_json(os.path.join(args.dir, "scale.json"))
  if result is None:
    raise SystemExit(f"error: {args.dir} has no readable scale.json")
  if args.note:
    result["note"] = args.note
  os.makedirs(args.results, exist_ok=True)
  _write_json(os.path.join(args.results, "scale.json"), result)
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  with files.atomic_path(os.path.join(args.results, "scale.md")) as tmp:
    with open(tmp, "w") as f:
      f.write(markdown(result))
  for png in sorted(glob.glob(os.path.join(args.dir, "scale_grid_*.png"))):
    shutil.copyfile(png, os.path.join(args.results, os.path.basename(png)))
  print(markdown(result))
  return result


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = p.add_subparsers(dest="command", required=True)

  def common(q):
    q.add_argument(
      "--dry_run",
      action="store_true",
      help="configs/tiny.py at 8 px, a few steps: the whole flow in seconds",
    )
    q.add_argument("--runs_dir", default="/tmp/scale_runs")
    q.add_argument("--out", default=os.environ.get("OUT", "/tmp/scale_out"))
    q.add_argument("--runs", default="", help="comma-separated subset of the runs, in order")

  drive = sub.add_parser("drive", help="start the runs and the watcher, decide, collect")
  common(drive)
  drive.add_argument(
    "--seconds",
    type=float,
    default=None,
    help="wall-clock budget of everything (default 470; dry run 600)",
  )
  drive.add_argument(
    "--post_seconds",
    type=float,
    default=None,
    help="kept after the GAN deadline for encoder, segmenter and evaluation "
    "(default 170; dry run 60: its GANs end at max_steps)",
  )
  drive.add_argument(
    "--target_images",
    type=int,
    default=None,
    help=f"images run 1 must reach (default {TARGET_IMAGES}; dry run 0)",
  )
  drive.add_argument(
    "--measure_seconds",
    type=float,
    default=15.0,
    help="span of run 1's progress lines behind each rate measurement",
  )
  drive.add_argument("--device", default="", help="the machine, in words, for the results")
  drive.add_argument(
    "--reference_cache",
    default="",
    help="a folder of cached reference segmenters (.npz), copied in first",
  )
  drive.add_argument("--poll", type=float, default=1.0)
  drive.add_argument("--write_every", type=float, default=10.0)
  drive.add_argument("--log_lines", type=int, default=25)
  for q in (drive, sub.add_parser("watch", help="(started by drive)")):
    if q is not drive:
      common(q)
      q.add_argument("--seconds", type=float, required=True)
      q.add_argument("--poll", type=float, default=1.0)
    q.add_argument(
      "--stats_every_images",
      type=int,
      default=None,
      help="images between statistics points (default 125000; dry run 0)",
    )
    q.add_argument(
      "--num_generated",
      type=int,
      default=None,
      help="samples per statistics point (default 512; dry run 16)",
    )
    q.add_argument(
      "--ref_steps",
      type=int,
      default=None,
      help="reference segmenter steps (default 2000; dry run 3)",
    )
    q.add_argument("--ref_width", type=int, default=None, help="(default 16; dry run 4)")
    q.add_argument("--ref_levels", type=int, default=None, help="(default 4; dry run 2)")
    q.add_argument(
      "--ref_eval_images",
      type=int,
      default=None,
      help="test images scoring the reference segmenter (default 500; dry 16)",
    )
  run = sub.add_parser("run", help="(started by drive)")
  common(run)
  run.add_argument("--name", required=True)
  summarize = sub.add_parser("summarize", help="returned files -> benchmarks/results/")
  summarize.add_argument("--dir", required=True)
  summarize.add_argument("--results", default=RESULTS)
  summarize.add_argument("--note", default="")
  return p


DEFAULTS = {  # (GPU, dry run)
  "seconds": (470.0, 600.0),
  "target_images": (TARGET_IMAGES, 0),
  "post_seconds": (170.0, 60.0),
  "stats_every_images": (125_000, 0),
  "num_generated": (512, 16),
  "ref_steps": (2000, 3),
  "ref_width": (16, 4),
  "ref_levels": (4, 2),
  "ref_eval_images": (500, 16),
}


def main(argv=None):
  args = build_parser().parse_args(argv)
  for key, values in DEFAULTS.items():
    if getattr(args, key, "absent") is None:
      setattr(args, key, values[1] if args.dry_run else values[0])
  for key in ("runs_dir", "out", "dir", "results"):
    if getattr(args, key, None):
      setattr(args, key, os.path.abspath(getattr(args, key)))
  return {"drive": drive_main, "watch": watch_main, "run": run_main, "summarize": summarize_main}[
    args.command
  ](args)


if __name__ == "__main__":
  main()
