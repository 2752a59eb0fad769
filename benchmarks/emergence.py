"""Emergence benchmark: does object segmentation emerge, and only with the shift perturbation?

On the embedded synthetic dataset (ground-truth masks), for each setting (poster ablation rows,
each defined ONLY as config overrides on top of ``--base_config``) and seed: train the layered
GAN, train the encoder and the distilled segmenter, evaluate both routes on the synthetic test
split (``evaluate.evaluate``, with the supervised reference segmenter of ``benchmarks/reference_segmenter.py`` as the offline
stand-in for the poster's Mask R-CNN on generated composites). Writes, under ``--out_dir``
(default ``benchmarks/results``):

  emergence.json  per-setting means / stds / per-seed values, baselines, supervised upper bound,
                  checks, command, machine, date, seconds;
  emergence.md    the table (also printed at the end);
  emergence.png   per setting (first seed): composites, backgrounds, foregrounds and masks of
                  the EMA generator on fixed latents (the run's samples/latest.png), then test
                  images, ground truth, predicted masks and overlays (the run's eval/panel.png).

Settings (poster rows): default (a), no_shift (b), shift_0.25 (c), bg_jitter (d),
single_generator (h); see SETTINGS.

Usage, from the repository root:

  # CPU-sized (a, b with seeds 0 and 1; h with seed 0), steps from the base config:
  python -m benchmarks.emergence --quick [--gan_steps=N --encoder_steps=N]
  # every setting, 3 seeds, 64 px, more steps (meant for an accelerator):
  python -m benchmarks.emergence --full --workdir_root=/data/emergence
  # any selection:
  python -m benchmarks.emergence --settings=default,no_shift --seeds=0,1,2 --reuse \
      --workdir_root=/tmp/emergence --config.model.channels="(64,64,64,48,32)"

Runs go to ``--workdir_root/<setting>/seed_<k>`` (default: a new temporary directory; runs are
never committed). Rerunning with the same ``--workdir_root`` resumes interrupted runs from their
checkpoints (and re-evaluates them); ``--reuse`` skips every run whose ``eval/metrics.json``
exists. A run directory made with another config is refused (``benchmark_run.json`` records it):
use another ``--workdir_root``. The reference segmenter is trained once per (resolution,
width, levels, steps, seed) and cached under ``--workdir_root/reference_segmenter/``.

Numbers: ``fg_iou`` is the per-image foreground IoU averaged over test images (primary),
``miou`` the two-class mean IoU, ``pixel_accuracy``; stds are sample stds over seeds (ddof=1;
0 with one seed). ``mask_coverage`` (mean soft mask of generated images) and
``mask_binary_fraction`` (share of mask pixels < 0.1 or > 0.9) describe the generator;
``reference_miou`` / ``reference_fg_iou`` compare the generator's mask of a composite with the
reference segmenter's mask of that composite, over the composites where it detects an object
(``detected_fraction``; detection = at least 1 % of the pixels predicted foreground).
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow (clu's writers) must not claim an accelerator or spam logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import apply_overrides, command_line, machine  # noqa: E402
from benchmarks.common import load_config as load_base_config  # noqa: E402

# name -> (poster row, overrides of the base config). The base config is row (a).
SETTINGS = {
  "default": ("a", {}),
  "no_shift": ("b", {"perturb.shift": 0.0}),
  "shift_0.25": ("c", {"perturb.shift": 0.25}),
  "bg_jitter": ("d", {"perturb.bg_contrast_jitter": 0.3}),
  "single_generator": ("h", {"model.variant": "single_generator"}),
}
TABLE_ORDER = ("default", "no_shift", "single_generator", "bg_jitter", "shift_0.25")

# --quick: (a) and (b) with 2 seeds, (h) with 1; steps from the base config.
QUICK_PLAN = {"default": [0, 1], "no_shift": [0, 1], "single_generator": [0]}
# --full (an accelerator): every setting, 3 seeds, 64 px, longer training.
FULL_SEEDS = [0, 1, 2]
FULL_DEFAULTS = {
  "resolution": 64,
  "gan_steps": 10_000,
  "encoder_steps": 4_000,
  "segmenter_steps": 4_000,
  "eval_max_examples": 1000,
}
DEFAULT_SEEDS = [0, 1]

SEGMENTER_DEFAULTS = {"steps": 2000, "width": 16, "levels": 4, "batch_size": 32}

CHECK_DEFAULT_MIN = 0.75
CHECK_BASELINE_MARGIN = 0.2
CHECK_NO_SHIFT_GAP = 0.3

_T0 = time.time()


def log(message: str) -> None:
  print(f"[emergence {time.time() - _T0:7.0f} s] {message}", flush=True)


# ------------------------------------------------------------------------------------ configs


def common_overrides(base, args) -> Dict[str, Any]:
  """Overrides shared by every setting: --config.FIELD=VALUE, --resolution, --gan_steps,
  --encoder_steps, --distilled_steps."""
  out = load_base_config(args.base_config, args.config_overrides)[1]
  if args.resolution:
    out["train.resolution"] = args.resolution
    if base.train.start_resolution == base.train.resolution:  # Fixed-resolution base: keep so.
      out["train.start_resolution"] = args.resolution
  if args.gan_steps:
    out["train.max_steps"] = args.gan_steps
  if args.encoder_steps:
    out["encoder.max_steps"] = args.encoder_steps
  if args.distilled_steps:
    out["segmenter.max_steps"] = args.distilled_steps
  if args.eval_max_examples:
    out["eval.max_examples"] = args.eval_max_examples
  return out


def run_config(args, common: Dict[str, Any], setting: str, seed: int):
  config = load_base_config(args.base_config)[0]
  apply_overrides(config, common)
  apply_overrides(config, SETTINGS[setting][1])
  config.seed = seed
  return config


def _normalized(config) -> Dict:
  return json.loads(json.dumps(config.to_dict(), default=str))


# ------------------------------------------------------------------------------------ runs


def _read_json(path: str) -> Optional[Dict]:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, obj) -> None:
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  files.write_json(path, obj)


def _config_diffs(a: Dict, b: Dict, prefix: str = "") -> List[str]:
  diffs = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k), b.get(k)
    if isinstance(va, dict) and isinstance(vb, dict):
      diffs += _config_diffs(va, vb, f"{prefix}{k}.")
    elif va != vb:
      diffs.append(f"{prefix}{k}: {va!r} (run dir) vs {vb!r} (now)")
  return diffs


def check_run_dir(workdir: str, config) -> Optional[Dict]:
  """The run record of ``workdir`` (None if new); exits if it was made with another config."""
  record = _read_json(os.path.join(workdir, "benchmark_run.json"))
  current = _normalized(config)
  if record is not None and record.get("config") != current:
    diffs = _config_diffs(record.get("config") or {}, current)
    raise SystemExit(
      f"error: {workdir} holds a run made with another config ("
      + "; ".join(diffs[:5])
      + "). Use another --workdir_root."
    )
  return record


def run_one(args, common, setting: str, seed: int, segmenter) -> Dict:
  """GAN, encoder, evaluation of one (setting, seed); returns its metrics and timings."""
  # pylint: disable=g-import-not-at-top
  import jax

  import main as entry
  from layered_gan_jax.evaluation import evaluate

  # pylint: enable=g-import-not-at-top
  config = run_config(args, common, setting, seed)
  workdir = os.path.join(args.workdir_root, setting, f"seed_{seed}")
  record_path = os.path.join(workdir, "benchmark_run.json")
  metrics_path = os.path.join(workdir, "eval", "metrics.json")
  current = _normalized(config)
  record = check_run_dir(workdir, config)
  if args.reuse and record is not None and os.path.isfile(metrics_path):
    timings = record.get("timings") or {}
    log(f"{setting} seed {seed}: reusing {metrics_path}")
    return {
      "metrics": _read_json(metrics_path),
      "timings": timings,
      "workdir": workdir,
      "reused": True,
    }
  _write_json(
    record_path,
    {
      "setting": setting,
      "seed": seed,
      "config": current,
      "overrides": SETTINGS[setting][1],
      "common_overrides": common,
    },
  )
  timings = {}
  phases = (
    ("gan", f"the GAN ({config.train.max_steps} steps, {config.train.resolution} px)", "train"),
    ("encoder", f"the encoder ({config.encoder.max_steps} steps)", "train_encoder"),
    (
      "segmenter",
      f"the distilled segmenter ({config.segmenter.max_steps} steps)",
      "train_segmenter",
    ),
  )
  for name, what, mode in phases:  # The modes of main.py's --mode=pipeline, timed apart.
    t = time.time()
    log(f"{setting} seed {seed}: training {what} in {workdir}")
    if not entry.run(config, workdir, mode):
      raise SystemExit(
        f"{setting} seed {seed}: stopped by SIGTERM while training {what} (a "
        "checkpoint is saved); rerun the same command to resume"
      )
    timings[f"{name}_seconds"] = time.time() - t
  t = time.time()
  log(f"{setting} seed {seed}: trained in {sum(timings.values()):.0f} s; evaluating")
  result = evaluate.evaluate(config, workdir, segmenter=segmenter)
  timings["eval_seconds"] = time.time() - t
  timings["seconds"] = sum(timings.values())
  _write_json(
    record_path,
    {
      "setting": setting,
      "seed": seed,
      "config": current,
      "overrides": SETTINGS[setting][1],
      "common_overrides": common,
      "timings": timings,
    },
  )
  log(
    f"{setting} seed {seed}: fg_iou "
    + ", ".join(f"{r} {m['fg_iou']:.4f}" for r, m in result["routes"].items())
    + f" (GAN {timings['gan_seconds']:.0f} s, encoder {timings['encoder_seconds']:.0f} s, "
    f"segmenter {timings['segmenter_seconds']:.0f} s, eval {timings['eval_seconds']:.0f} s)"
  )
  jax.clear_caches()  # Each run compiles its own steps; do not keep them all.
  return {"metrics": result, "timings": timings, "workdir": workdir, "reused": False}


# ------------------------------------------------------------------------------------ aggregation


def _mean(values) -> Optional[float]:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _std(values) -> Optional[float]:
  values = [v for v in values if v is not None]
  if not values:
    return None
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate(setting: str, seeds: List[int], runs: List[Dict]) -> Dict:
  """Means / stds over the seeds; a failed run (diverged) counts as None and is left out."""

  def per_seed(key, generated=False):
    return [
      None
      if r["metrics"] is None
      else (r["metrics"].get("generated", {}) if generated else r["metrics"]).get(key)
      for r in runs
    ]

  out = {"row": SETTINGS[setting][0], "seeds": list(seeds), "overrides": dict(SETTINGS[setting][1])}
  for key in ("fg_iou", "miou", "pixel_accuracy", "max_fbeta"):
    values = per_seed(key)
    out[key] = _mean(values)
    out[f"{key}_per_seed"] = values
    out[f"{key}_std"] = _std(values)
  # Each route's figures (runs made before the distilled route have the encoder's only).
  out["routes"] = {}
  for route in ("distilled", "encoder"):
    values = [
      None
      if r["metrics"] is None
      else (r["metrics"].get("routes", {}).get(route) or {}).get("fg_iou")
      for r in runs
    ]
    if any(v is not None for v in values):
      out["routes"][route] = {
        "fg_iou": _mean(values),
        "fg_iou_std": _std(values),
        "fg_iou_per_seed": values,
      }
  for key in (
    "mask_coverage",
    "mask_binary_fraction",
    "binarized_coverage_mean",
    "empty_mask_fraction",
    "reference_miou",
    "reference_miou_inverted_mask",
    "reference_fg_iou",
    "detected_fraction",
  ):
    values = per_seed(key, generated=True)
    out[key] = _mean(values)
    out[f"{key}_per_seed"] = values
  for key in ("fid", "kid"):  # The generator against the real training images (eval.fid_*).
    values = [
      None if r["metrics"] is None else (r["metrics"].get("fid") or {}).get(key) for r in runs
    ]
    out[key] = _mean(values)
    out[f"{key}_per_seed"] = values
  out["seconds"] = float(sum((r["timings"] or {}).get("seconds", 0.0) for r in runs))
  out["reused_runs"] = sum(bool(r["reused"]) for r in runs)
  out["errors"] = {str(seed): r["error"] for seed, r in zip(seeds, runs) if r.get("error")}
  out["workdirs"] = [r["workdir"] for r in runs]
  return out


def checks(settings: Dict, baselines: Dict) -> Dict[str, Optional[bool]]:
  """The benchmark's pass/fail criteria; None where a needed setting was not run."""
  d = settings.get("default", {}).get("fg_iou")
  b = settings.get("no_shift", {}).get("fg_iou")
  best = max((m.get("fg_iou", 0.0) for m in baselines.values()), default=None)
  return {
    f"default_ge_{CHECK_DEFAULT_MIN}": None if d is None else bool(d >= CHECK_DEFAULT_MIN),
    f"default_beats_baselines_by_{CHECK_BASELINE_MARGIN}": None
    if d is None or best is None
    else bool(d >= best + CHECK_BASELINE_MARGIN),
    f"no_shift_{CHECK_NO_SHIFT_GAP}_below_default": None
    if d is None or b is None
    else bool(b <= d - CHECK_NO_SHIFT_GAP),
  }


# ------------------------------------------------------------------------------------ outputs


def _fmt(value, digits: int = 3) -> str:
  return "–" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
  return "–" if value is None else f"{100 * value:.1f} %"


def markdown_table(result: Dict) -> str:
  lines = [
    "| setting | fg IoU (mean ± std) | fg IoU per seed | distilled fg IoU | encoder fg IoU "
    "| mIoU | pixel acc. | mask coverage | binarization | reference mIoU | detected % "
    "| FID | KID |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name in TABLE_ORDER:
    s = result["settings"].get(name)
    if s is None:
      continue
    per_seed = ", ".join(
      f"{v:.3f} (s{k})" if v is not None else f"failed (s{k})"
      for k, v in zip(s["seeds"], s["fg_iou_per_seed"])
    )
    route = {r: (s.get("routes") or {}).get(r, {}) for r in ("distilled", "encoder")}
    route = {
      r: f"{_fmt(m.get('fg_iou'))} ± {_fmt(m.get('fg_iou_std'))}" if m else "–"
      for r, m in route.items()
    }
    lines.append(
      f"| ({s['row']}) {name} | {_fmt(s['fg_iou'])} ± {_fmt(s['fg_iou_std'])} | {per_seed} "
      f"| {route['distilled']} | {route['encoder']} | {_fmt(s['miou'])} "
      f"| {_fmt(s['pixel_accuracy'])} | {_fmt(s['mask_coverage'])} "
      f"| {_fmt(s['mask_binary_fraction'])} | {_fmt(s['reference_miou'])} "
      f"| {_pct(s['detected_fraction'])} | {_fmt(s.get('fid'), 1)} | {_fmt(s.get('kid'), 4)} |"
    )
  for name, m in result["baselines"].items():
    lines.append(
      f"| baseline: {name} | {_fmt(m.get('fg_iou'))} | | | | {_fmt(m.get('miou'))} "
      f"| {_fmt(m.get('pixel_accuracy'))} | | | | | | |"
    )
  ub = result.get("supervised_upper_bound") or {}
  if ub:
    lines.append(
      f"| supervised upper bound (reference U-Net) | {_fmt(ub.get('fg_iou'))} | "
      f"| | | {_fmt(ub.get('miou'))} | {_fmt(ub.get('pixel_accuracy'))} | | | "
      f"| {_pct(ub.get('detected_fraction'))} | | |"
    )
  return "\n".join(lines)


def markdown(result: Dict) -> str:
  c = result["config"]
  check_lines = "\n".join(
    f"- `{k}`: {'–' if v is None else ('PASS' if v else 'FAIL')}"
    for k, v in result["checks"].items()
  )
  ub = result.get("supervised_upper_bound") or {}
  return f"""# Emergence benchmark (synthetic dataset)

Layered GAN + encoder per setting and seed, evaluated on the first {c["eval_images"]} images of
the synthetic test split at {c["resolution"]} px. fg IoU: per-image foreground IoU averaged over
images (primary); mIoU: two-class mean IoU; std: sample std over seeds. Mask coverage /
binarization: the EMA generator's masks on {c["num_generated"]} random latents (mean soft mask;
share of pixels < 0.1 or > 0.9). Reference mIoU: two-class mIoU between the generator's mask and
the supervised reference segmenter's mask of the same composite (the poster's Mask R-CNN
protocol), over the composites where it detects an object (detected %: >= 1 % of the pixels).
Baselines (no training) and the supervised upper bound (a U-Net trained with ground-truth
masks: {ub.get("steps")} steps, width {ub.get("width")}) on the same test images. FID / KID:
the EMA generator's composites against real training images (``eval.fid_samples`` and
``eval.fid_real_images`` of the config; layered_gan_jax/metrics/fid.py).

{markdown_table(result)}

Checks:
{check_lines}

Base config `{c["base_config"]}`, GAN steps {c["gan_steps"]}, encoder steps
{c["encoder_steps"]}; extra overrides {c["common_overrides"]}.
Command: `{result["command"]}`
Machine: {result["machine"]}; {result["date"]}; {result["seconds"]:.0f} s in all.
"""


def _grid_cells(path: str, resolution: int, rows: Optional[int], max_cols: int):
  """Cells [row][col] (uint8 [R, R, 3]) of a visualization.grid PNG (pad 2), or None."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    return None
  image = np.asarray(Image.open(path).convert("RGB"))
  h, w = image.shape[:2]
  r = resolution
  if (h - 2) % (r + 2) or (w - 2) % (r + 2):
    return None
  n_rows, n_cols = (h - 2) // (r + 2), min(max_cols, (w - 2) // (r + 2))
  n_rows = min(n_rows, rows) if rows else n_rows
  return [
    [
      image[2 + i * (r + 2) : 2 + i * (r + 2) + r, 2 + j * (r + 2) : 2 + j * (r + 2) + r]
      for j in range(n_cols)
    ]
    for i in range(n_rows)
  ]


def make_figure(result: Dict, path: str, columns: int = 6) -> None:
  """One block per setting (first seed): 4 sample rows then 4 evaluation-panel rows."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top

  labels = [
    "composite",
    "background",
    "foreground",
    "mask",
    "test image",
    "ground truth",
    "predicted",
    "overlay",
  ]
  r = int(result["config"]["resolution"])
  scale = max(1, 64 // r)
  cell, pad, label_w, head_h = r * scale, 2, 90, 28
  blocks = []
  for name in TABLE_ORDER:
    s = result["settings"].get(name)
    if s is None:
      continue
    workdir = s["workdirs"][0]
    samples = _grid_cells(os.path.join(workdir, "samples", "latest.png"), r, 4, columns)
    panel = _grid_cells(os.path.join(workdir, "eval", "panel.png"), r, 4, columns)
    blocks.append((name, s, (samples or [[]] * 4)[:4] + (panel or [[]] * 4)[:4]))
  if not blocks:
    return
  block_w = columns * (cell + pad) + 12
  width = label_w + len(blocks) * block_w
  height = head_h + 8 * (cell + pad) + 2 * pad + 8
  canvas = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(canvas)
  for i, label in enumerate(labels):
    y = head_h + i * (cell + pad) + (4 * pad if i >= 4 else 0) + cell // 2 - 5
    draw.text((4, y), label, fill="black")
  for b, (name, s, rows) in enumerate(blocks):
    x0 = label_w + b * block_w
    draw.text((x0, 2), f"({s['row']}) {name}, seed {s['seeds'][0]}", fill="black")
    fg = s["fg_iou_per_seed"][0]
    draw.text((x0, 14), f"test fg IoU {_fmt(fg)}", fill="black")
    for i, row in enumerate(rows):
      y = head_h + i * (cell + pad) + (4 * pad if i >= 4 else 0)
      if not row:
        draw.rectangle([x0, y, x0 + columns * (cell + pad) - pad, y + cell], fill=(200, 200, 200))
        continue
      for j, c in enumerate(row):
        tile = Image.fromarray(c).resize((cell, cell), Image.NEAREST)
        canvas.paste(tile, (x0 + j * (cell + pad), y))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  canvas.save(path)


# ------------------------------------------------------------------------------------ main


def _int_list(text: str) -> List[int]:
  return [int(t) for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  preset = p.add_mutually_exclusive_group()
  preset.add_argument(
    "--quick",
    action="store_true",
    help="default and no_shift with seeds 0,1; single_generator with seed 0",
  )
  preset.add_argument(
    "--full",
    action="store_true",
    help=f"every setting, seeds {FULL_SEEDS}, defaults {FULL_DEFAULTS}",
  )
  p.add_argument("--base_config", default=os.path.join(REPO, "configs", "synthetic.py"))
  p.add_argument(
    "--settings",
    default=None,
    help=f"comma-separated subset of {', '.join(TABLE_ORDER)} (default: the preset's, else all)",
  )
  p.add_argument(
    "--seeds",
    default=None,
    help=f"comma-separated seeds for every setting (default: the preset's, else {DEFAULT_SEEDS})",
  )
  p.add_argument("--gan_steps", type=int, default=None, help="train.max_steps of every run")
  p.add_argument("--encoder_steps", type=int, default=None, help="encoder.max_steps of every run")
  p.add_argument(
    "--distilled_steps",
    type=int,
    default=None,
    help="segmenter.max_steps (the distilled segmenter) of every run",
  )
  p.add_argument(
    "--resolution",
    type=int,
    default=None,
    help="train.resolution (and start_resolution if the base config trains at one resolution)",
  )
  p.add_argument(
    "--eval_max_examples",
    type=int,
    default=None,
    help="eval.max_examples (test images per evaluation)",
  )
  p.add_argument(
    "--segmenter_steps",
    type=int,
    default=None,
    help=f"reference segmenter steps (default {SEGMENTER_DEFAULTS['steps']})",
  )
  p.add_argument("--segmenter_width", type=int, default=SEGMENTER_DEFAULTS["width"])
  p.add_argument("--segmenter_levels", type=int, default=SEGMENTER_DEFAULTS["levels"])
  p.add_argument("--segmenter_seed", type=int, default=0)
  p.add_argument(
    "--workdir_root", default=None, help="run directories (default: a new temporary directory)"
  )
  p.add_argument("--out_dir", default=os.path.join(REPO, "benchmarks", "results"))
  p.add_argument(
    "--reuse",
    action="store_true",
    help="skip runs whose eval/metrics.json exists (same config required)",
  )
  p.add_argument("--verbose", action="store_true", help="show the trainers' INFO logs")
  p.add_argument(
    "--dry_run",
    action="store_true",
    help="print the plan and each setting's config differences, then exit",
  )
  return p


def plan_runs(args) -> Dict[str, List[int]]:
  if args.settings:
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
  elif args.quick:
    names = list(QUICK_PLAN)
  else:
    names = list(TABLE_ORDER)
  unknown = [n for n in names if n not in SETTINGS]
  if unknown:
    raise SystemExit(f"error: unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
  if args.seeds:
    seeds = _int_list(args.seeds)
    return {n: list(seeds) for n in names}
  if args.quick:
    return {n: list(QUICK_PLAN.get(n, [0])) for n in names}
  return {n: list(FULL_SEEDS if args.full else DEFAULT_SEEDS) for n in names}


def _synthetic_version() -> int:
  from layered_gan_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  return synthetic.VERSION


def get_reference_segmenter(
  args, resolution: int, eval_images: int, dataset_seed: int = 0, layout=None
):
  """The reference segmenter of the synthetic dataset (``layout``: a variant's, default the
  dataset's own), trained once and cached under ``--workdir_root``, with its test figures."""
  from benchmarks import reference_segmenter as rs  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  layout = layout or synthetic.LAYOUT
  seg_res = min(max(int(resolution), synthetic.RESOLUTIONS[0]), synthetic.RESOLUTIONS[-1])
  steps = args.segmenter_steps or SEGMENTER_DEFAULTS["steps"]
  levels = args.segmenter_levels
  while levels > 1 and seg_res % 2 ** (levels - 1):
    levels -= 1
  name = (
    f"v{synthetic.VERSION}_r{seg_res}_w{args.segmenter_width}_l{levels}_s{steps}"
    f"_seed{args.segmenter_seed}"
    + (f"_data{dataset_seed}" if dataset_seed else "")
    + (
      ""
      if layout == synthetic.LAYOUT
      else f"_m{layout.margin:g}_r{layout.rim_probability:g}_bg"
      + "-".join(f"{w:g}" for w in layout.bg_textures)
    )
    + ".npz"
  )
  path = os.path.join(args.workdir_root, "reference_segmenter", name)
  t = time.time()
  if os.path.isfile(path):
    segmenter = rs.load(path)
    log(f"reference segmenter: loaded {path}")
  else:
    log(
      f"reference segmenter: training {steps} steps at {seg_res} px (width "
      f"{args.segmenter_width}, {levels} levels)"
    )
    segmenter = rs.train_reference_segmenter(
      seg_res,
      steps,
      args.segmenter_seed,
      batch_size=SEGMENTER_DEFAULTS["batch_size"],
      width=args.segmenter_width,
      levels=levels,
      dataset_seed=dataset_seed,
      layout=layout,
    )
    segmenter.save(path)
  train_s = time.time() - t
  ub = segmenter.evaluate_on_test(
    num_examples=eval_images, resolution=seg_res, dataset_seed=dataset_seed, layout=layout
  )
  ub.update(
    steps=steps,
    width=args.segmenter_width,
    levels=levels,
    seed=args.segmenter_seed,
    train_seconds=segmenter.meta.get("train_seconds"),
    final_loss=segmenter.meta.get("final_loss"),
    path=path,
  )
  log(
    f"reference segmenter: test fg_iou {ub['fg_iou']:.4f} miou {ub['miou']:.4f} "
    f"({time.time() - t:.0f} s, of which {train_s:.0f} s loading/training)"
  )
  return segmenter, ub


def main(argv=None) -> Dict:
  # Other arguments: --config.FIELD=VALUE, overrides of the base config for every setting.
  args, args.config_overrides = build_parser().parse_known_args(argv)
  t_start = time.time()
  if args.full:
    for key in ("resolution", "gan_steps", "encoder_steps", "segmenter_steps", "eval_max_examples"):
      if getattr(args, key) is None:
        setattr(args, key, FULL_DEFAULTS[key])
  plan = plan_runs(args)
  if args.workdir_root is None:
    args.workdir_root = tempfile.mkdtemp(prefix="emergence_")
  args.workdir_root = os.path.abspath(args.workdir_root)
  os.makedirs(args.workdir_root, exist_ok=True)

  # Configs are checked before anything heavy starts.
  base = load_base_config(args.base_config)[0]
  common = common_overrides(base, args)
  from layered_gan_jax import errors  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

  for name in plan:
    config = run_config(args, common, name, 0)
    try:
      validate.validate_config(config, "train")
    except errors.ConfigError as e:
      raise SystemExit(f"error: setting {name}: {e}") from None
    if config.data.name != "synthetic":
      raise SystemExit(
        f"error: the benchmark runs on the synthetic dataset; the base config "
        f"has data.name={config.data.name!r}"
      )
  config = run_config(args, common, next(iter(plan)), 0)
  resolution = int(config.train.resolution)
  if args.dry_run:
    base_dict = _normalized(base)
    print(f"plan: {plan}; workdir_root {args.workdir_root}; common overrides {common}")
    for name in plan:
      diffs = _config_diffs(base_dict, _normalized(run_config(args, common, name, 0)))
      print(
        f"  {name} ({SETTINGS[name][0]}): "
        + (
          "; ".join(d.replace("(run dir)", "(base)").replace("(now)", "(run)") for d in diffs)
          or "base config"
        )
      )
    print(
      f"GAN steps {config.train.max_steps} at {config.train.start_resolution}->"
      f"{resolution} px, encoder steps {config.encoder.max_steps}, eval on "
      f"{config.eval.max_examples} test images, reference segmenter "
      f"{args.segmenter_steps or SEGMENTER_DEFAULTS['steps']} steps"
    )
    return {}
  eval_images = int(config.eval.max_examples or 1000)

  from absl import logging  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
  try:  # TensorFlow (clu's writers) must not take accelerator memory from JAX.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except Exception:  # pylint: disable=broad-except
    pass
  from layered_gan_jax import parallel  # pylint: disable=g-import-not-at-top

  parallel.maybe_initialize_distributed()

  for name, seeds in plan.items():  # Refuse run directories of other configs up front.
    for seed in seeds:
      check_run_dir(
        os.path.join(args.workdir_root, name, f"seed_{seed}"), run_config(args, common, name, seed)
      )
  total_runs = sum(len(s) for s in plan.values())
  log(
    f"plan: {plan} ({total_runs} runs), base config {args.base_config}, overrides {common}, "
    f"workdir_root {args.workdir_root}"
  )
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top

  segmenter, upper_bound = get_reference_segmenter(
    args,
    resolution,
    eval_images,
    int(config.data.get("synthetic_seed", 0) or 0),
    data_config.synthetic_layout(config.data),
  )

  settings, first_metrics, done, run_seconds = {}, None, 0, []
  for name, seeds in plan.items():
    runs = []
    for seed in seeds:
      t = time.time()
      try:
        run = run_one(args, common, name, seed, segmenter)
      except FloatingPointError as e:  # loop.NonFiniteLossError: the run diverged.
        log(f"{name} seed {seed}: FAILED ({e}); left out of the means")
        run = {
          "metrics": None,
          "timings": {"seconds": time.time() - t},
          "reused": False,
          "workdir": os.path.join(args.workdir_root, name, f"seed_{seed}"),
          "error": f"{type(e).__name__}: {e}",
        }
      runs.append(run)
      done += 1
      if not run["reused"]:
        run_seconds.append(time.time() - t)
      first_metrics = first_metrics or run["metrics"]
      eta = (
        f", about {np.mean(run_seconds) * (total_runs - done) / 60:.0f} min left"
        if run_seconds and done < total_runs
        else ""
      )
      log(f"run {done}/{total_runs} done ({time.time() - t:.0f} s){eta}")
    settings[name] = aggregate(name, seeds, runs)

  first_metrics = first_metrics or {}
  baselines = dict(first_metrics.get("baselines", {}))
  result = {
    "settings": settings,
    "baselines": baselines,
    "supervised_upper_bound": upper_bound,
    "checks": checks(settings, baselines),
    "config": {
      "base_config": os.path.relpath(os.path.abspath(args.base_config), REPO),
      "preset": "quick" if args.quick else ("full" if args.full else "custom"),
      "gan_steps": int(config.train.max_steps),
      "encoder_steps": int(config.encoder.max_steps),
      "resolution": int(first_metrics.get("resolution", resolution)),
      "eval_images": int(first_metrics.get("num_images", eval_images)),
      "num_generated": int(
        first_metrics.get("generated", {}).get("num_generated", config.eval.num_generated)
      ),
      "common_overrides": {k: (list(v) if isinstance(v, tuple) else v) for k, v in common.items()},
      "workdir_root": args.workdir_root,
      "synthetic_dataset_version": _synthetic_version(),
    },
    "metric": "fg_iou: per-image foreground IoU averaged over test images; miou: two-class "
    "mean IoU; *_std: sample std over seeds (ddof=1).",
    "command": command_line("benchmarks.emergence", argv),
    "machine": machine(),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "seconds": round(time.time() - t_start, 1),
  }
  os.makedirs(args.out_dir, exist_ok=True)
  _write_json(os.path.join(args.out_dir, "emergence.json"), result)
  with open(os.path.join(args.out_dir, "emergence.md"), "w") as f:
    f.write(markdown(result))
  make_figure(result, os.path.join(args.out_dir, "emergence.png"))
  log(f"wrote emergence.json, emergence.md, emergence.png to {args.out_dir}")
  print()
  print(markdown_table(result))
  print()
  for k, v in result["checks"].items():
    print(f"{k}: {'not run' if v is None else ('PASS' if v else 'FAIL')}")
  return result


if __name__ == "__main__":
  main()
