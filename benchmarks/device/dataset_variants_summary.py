"""Summarizes the runs of ``dataset_variants.sh`` into one JSON and a Markdown table.

  python -m benchmarks.device.dataset_variants_summary --dir=RUNS \
      --json=benchmarks/results/emergence_dataset_variants.json [--note=TEXT]

``RUNS`` holds, per run ``NAME``: ``NAME.variant`` (one line: ``NAME margin=M rim=P
setting=S seed=K [extra flags]``), ``NAME.log`` and the emergence work directory ``NAME/``,
whose ``<setting>/seed_<K>/eval/metrics.json`` has the figures.
"""

import argparse
import datetime
import glob
import json
import os
import shlex
import sys

FIELDS = (
  ("fg_iou", "encoder fg IoU"),
  ("miou", "encoder mIoU"),
  ("reference_miou", "reference mIoU"),
  ("reference_miou_inverted_mask", "reference mIoU, inverted mask"),
  ("reference_fg_iou", "reference fg IoU"),
  ("mask_coverage", "mask coverage"),
  ("binarized_coverage_std", "binarized coverage std"),
  ("grabcut_fg_iou", "GrabCut fg IoU"),
  ("center_prior_fg_iou", "centred prior fg IoU"),
)


def read_run(path: str) -> dict:
  with open(path) as f:
    words = f.read().split()
  row = {
    "name": words[0],
    "extra": " ".join(w for w in words[1:] if "=" not in w or w.startswith("--")),
  }
  for w in words[1:]:
    key, _, value = w.partition("=")
    if key in ("margin", "rim"):
      row[key] = float(value)
    elif key in ("setting", "seed"):
      row[key] = int(value) if key == "seed" else value
  metrics_path = os.path.join(
    os.path.dirname(path),
    row["name"],
    row["setting"],
    f"seed_{row['seed']}",
    "eval",
    "metrics.json",
  )
  if not os.path.isfile(metrics_path):
    row["missing"] = metrics_path
    return row
  with open(metrics_path) as f:
    m = json.load(f)
  gen = m.get("generated", {})
  row.update(
    fg_iou=m["fg_iou"],
    miou=m["miou"],
    resolution=m["resolution"],
    eval_images=m["num_images"],
    mask_coverage=gen.get("mask_coverage"),
    reference_miou=gen.get("reference_miou"),
    reference_miou_inverted_mask=gen.get("reference_miou_inverted_mask"),
    reference_fg_iou=gen.get("reference_fg_iou"),
    binarized_coverage_std=gen.get("binarized_coverage_std"),
    grabcut_fg_iou=m["baselines"]["grabcut"]["fg_iou"],
    center_prior_fg_iou=m["baselines"]["center_prior"]["fg_iou"],
  )
  return row


def table(rows) -> str:
  head = "| run | margin | rim | setting | seed | extra | " + " | ".join(t for _, t in FIELDS)
  lines = [head + " |", "|" + "---|" * (6 + len(FIELDS))]
  for r in rows:
    vals = ["n/a" if r.get(k) is None else f"{r[k]:.3f}" for k, _ in FIELDS]
    lines.append(
      f"| {r['name']} | {r['margin']} | {r['rim']} | {r['setting']} | {r['seed']} | "
      f"{r['extra']} | " + " | ".join(vals) + " |"
    )
  return "\n".join(lines)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--dir", required=True)
  parser.add_argument("--json", required=True)
  parser.add_argument("--note", default="")
  args = parser.parse_args(argv)
  paths = sorted(glob.glob(os.path.join(args.dir, "*.variant")))
  if not paths:
    sys.exit(f"dataset_variants_summary: no *.variant files under {args.dir}")
  rows = [read_run(p) for p in paths]
  result = {
    "runs": rows,
    "table": table(rows),
    "note": args.note,
    "command": (
      shlex.join(["python", "-m", "benchmarks.device.dataset_variants_summary"] + sys.argv[1:])
      if argv is None
      else None
    ),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  with open(args.json, "w") as f:
    json.dump(result, f, indent=2)
  print(result["table"])
  return result


if __name__ == "__main__":
  main()
