"""Which segmenter? The choices of the distilled segmenter and of the encoder, on one frozen GAN.

  python -m benchmarks.segmenter_choices --gan_workdir=DIR [--config=configs/synthetic.py] \
      [--choices=default,no_recompose,...] [--config.FIELD=VALUE ...] \
      --workdir_root=DIR --json=benchmarks/results/segmenter_choices.json

``--gan_workdir`` holds a trained GAN (``checkpoints/``, e.g. the README's main job); its
checkpoints are linked, never written. Each choice is a set of config overrides (CHOICES) on
``--config``; a distilled choice trains a fresh segmenter (``--mode=train_segmenter``), an
encoder choice a fresh encoder (``--mode=train_encoder``; refinement only changes prediction,
so it reuses the encoder of ``encoder``, as ``no_mirror_average`` reuses the segmenter of
``default``). Each is scored by ``--mode=evaluate`` on the same
test images; the table gives fg IoU, mIoU, max F-beta and the seconds the choice took. This is a
report: the shipped defaults are not chosen on these test masks.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import time  # noqa: E402

from benchmarks.common import (  # noqa: E402
  apply_overrides,
  command_line,
  gan_checkpoints,
  load_config,
  machine,
  selected,
)

# name -> (route, overrides, the choice whose trained network it reuses, or None)
CHOICES = {
  "default": ("distilled", {}, None),
  "no_mirror_average": ("distilled", {"segment.mirror_average": False}, "default"),
  "no_recompose": ("distilled", {"segmenter.recompose": False}, None),
  "no_scale": ("distilled", {"segmenter.scale_range": (1.0, 1.0)}, None),
  "no_translate": ("distilled", {"segmenter.translate": False}, None),
  "no_flip": ("distilled", {"segmenter.flip_prob": 0.0}, None),
  "no_background_swap": ("distilled", {"segmenter.swap_background_prob": 0.0}, None),
  "color_jitter": ("distilled", {"segmenter.color_jitter": 0.2}, None),
  "no_filter": (
    "distilled",
    {"segmenter.min_area": 0.0, "segmenter.max_area": 1.0, "segmenter.max_uncertainty": 0.5},
    None,
  ),
  "encoder": ("encoder", {}, None),
  "encoder_placement": ("encoder", {"encoder.predict_placement": True}, None),
  "encoder_refine_20": ("encoder", {"encoder.refine_steps": 20}, "encoder"),
  "encoder_placement_refine_20": (
    "encoder",
    {"encoder.predict_placement": True, "encoder.refine_steps": 20},
    "encoder_placement",
  ),
}
METRICS = ("fg_iou", "miou", "pixel_accuracy", "max_fbeta")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--gan_workdir", required=True)
  p.add_argument("--config", default=os.path.join(REPO, "configs", "synthetic.py"))
  p.add_argument("--choices", default=",".join(CHOICES))
  p.add_argument("--workdir_root", required=True)
  p.add_argument("--json", required=True)
  args, args.config_overrides = p.parse_known_args(argv)  # --config.FIELD=VALUE ...
  return args


def _link(src, dst):
  if os.path.exists(src) and not os.path.exists(dst):
    os.symlink(src, dst)


def main(argv=None):
  args = parse_args(argv)
  choices = selected(args.choices, CHOICES, "choice")
  for i, name in enumerate(choices):
    reuse = CHOICES[name][2]
    if reuse and reuse not in choices[:i]:
      sys.exit(
        f"error: choice {name!r} reuses the network of {reuse!r}; list {reuse!r} before "
        "it in --choices"
      )
  gan_ckpt = gan_checkpoints(args.gan_workdir)
  import main as entry  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

  base, overrides = load_config(args.config, args.config_overrides)
  configs = {}
  for name in choices:  # Validate every config before anything runs.
    route, extra, _ = CHOICES[name]
    config = copy.deepcopy(base)
    apply_overrides(config, {**extra, "segment.route": route})
    config.eval.num_generated = 64  # Mask statistics are not the subject here.
    if configs:  # The baselines do not depend on the choice: computed once.
      config.eval.baselines = ()
    validate.validate_config(config, "pipeline")
    configs[name] = config
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.run import layout  # pylint: disable=g-import-not-at-top

  start, results = time.time(), {}
  for name in choices:
    route, extra, reuse = CHOICES[name]
    workdir = os.path.join(os.path.abspath(args.workdir_root), name)
    os.makedirs(workdir, exist_ok=True)
    _link(gan_ckpt, os.path.join(workdir, "checkpoints"))
    t = time.time()
    sub = layout.SEGMENTER_DIR if route == "distilled" else layout.ENCODER_DIR
    if reuse:
      _link(
        os.path.join(os.path.abspath(args.workdir_root), reuse, sub), os.path.join(workdir, sub)
      )
    else:
      entry.run(
        configs[name], workdir, "train_segmenter" if route == "distilled" else "train_encoder"
      )
    metrics = evaluate.evaluate(configs[name], workdir)
    results[name] = {
      "route": route,
      "overrides": extra,
      "reuses": reuse,
      **{k: float(metrics[k]) for k in METRICS},
      "baselines": {b: m["fg_iou"] for b, m in metrics["baselines"].items()}
      or results.get(choices[0], {}).get("baselines", {}),
      "seconds": time.time() - t,
    }
    r = results[name]
    print(
      f"{name:28s} {route:9s} fg_iou {r['fg_iou']:.3f}  miou {r['miou']:.3f}  max F "
      f"{r['max_fbeta']:.3f}  ({r['seconds']:.0f} s)",
      flush=True,
    )

  out = {
    "choices": results,
    "gan_workdir": os.path.abspath(args.gan_workdir),
    "config": os.path.relpath(args.config, REPO),
    "overrides": overrides,
    "command": command_line("benchmarks.segmenter_choices"),
    "machine": machine(),
    "date": datetime.date.today().isoformat(),
    "seconds": time.time() - start,
  }
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top

  files.write_json(args.json, out)
  with files.atomic_path(os.path.splitext(args.json)[0] + ".md") as tmp:
    with open(tmp, "w") as f:
      f.write(markdown(out))
  print(f"wrote {args.json}")
  return out


def markdown(out) -> str:
  lines = [
    f"# Segmenter choices ({out['date']})",
    "",
    f"Command: `{out['command']}`",
    "",
    f"Machine: {out['machine']}; {out['seconds'] / 60:.0f} min in all.",
    "",
    "| choice | route | overrides | fg IoU | mIoU | max F-beta | seconds |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, r in out["choices"].items():
    over = ", ".join(f"`{k}={v}`" for k, v in r["overrides"].items()) or "defaults"
    lines.append(
      f"| {name} | {r['route']} | {over} | {r['fg_iou']:.3f} | {r['miou']:.3f} | "
      f"{r['max_fbeta']:.3f} | {r['seconds']:.0f} |"
    )
  first = next(iter(out["choices"].values()))
  lines += [
    "",
    "Baselines on the same images (fg IoU): "
    + ", ".join(f"{b} {v:.3f}" for b, v in first["baselines"].items()),
  ]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  main()
