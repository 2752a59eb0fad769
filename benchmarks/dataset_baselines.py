"""Trivial segmenters on the embedded synthetic dataset: is it hard enough?

Renders the synthetic test split and scores the baselines of ``layered_gan_jax.metrics.baselines``
(foreground IoU per image, averaged over images; two-class mIoU and pixel accuracy in "details").
The synthetic dataset should defeat them: none of center_prior, color_threshold (an oracle
upper bound), kmeans, grabcut above 0.55 foreground IoU; full_image equals the mean object area.

Run from the repository root:
  python -m benchmarks.dataset_baselines --resolution=64 \
      --json=benchmarks/results/dataset_baselines_64.json
"""

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os
import sys
import time  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from layered_gan_jax.data import synthetic  # noqa: E402
from layered_gan_jax.metrics import baselines, segmentation  # noqa: E402


def run(resolution: int, num_examples: int, seed: int, split: str = "test") -> dict:
  start_time = time.perf_counter()
  t0 = time.perf_counter()
  data = synthetic.generate(split, 0, num_examples, resolution, seed)
  render_s = time.perf_counter() - t0
  images, gt = data["image"], data["mask"].astype(bool)

  masks = {name: fn(images) for name, fn in baselines.BASELINES.items()}
  channel, threshold, polarity, _ = baselines.fit_color_threshold(images, gt)
  masks["color_threshold"] = baselines.apply_color_threshold(images, channel, threshold, polarity)

  order = ("full_image", "center_prior", "color_threshold", "kmeans", "grabcut")
  details = {name: segmentation.segmentation_metrics(masks[name], gt) for name in order}
  result = {name: details[name]["fg_iou"] for name in order}
  result.update(
    {
      "mean_object_area": float(gt.mean()),
      "resolution": resolution,
      "num_examples": num_examples,
      "split": split,
      "seed": seed,
      "color_threshold_rule": {"channel": channel, "threshold": threshold, "polarity": polarity},
      "render_images_per_second": num_examples / render_s,
      "command": " ".join(["python"] + sys.argv),
      "machine": machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "seconds": round(time.perf_counter() - start_time, 2),
      "details": details,
      "metric": "fg_iou: per-image foreground IoU averaged over images (see "
      "layered_gan_jax/metrics/segmentation.py); details add two-class mIoU, pixel accuracy, "
      "max F-beta (beta^2 = 0.3).",
    }
  )
  return result


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--resolution", type=int, default=64)
  parser.add_argument("--num_examples", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--split", default="test", choices=sorted(synthetic.SPLIT_SIZES))
  parser.add_argument("--json", default=None, help="where to write the results (JSON)")
  args = parser.parse_args(argv)
  try:
    synthetic.check_resolution(args.resolution)
  except ValueError as e:
    parser.error(str(e))
  if args.num_examples < 1:
    parser.error("--num_examples must be >= 1.")
  result = run(args.resolution, args.num_examples, args.seed, args.split)

  print(
    f"synthetic {args.split} split, {args.num_examples} images at {args.resolution} px "
    f"(mean object area {result['mean_object_area']:.3f})"
  )
  print(f"{'baseline':<16} {'fg IoU':>7} {'mIoU':>7} {'pix acc':>8} {'maxFb':>7}")
  for name, d in result["details"].items():
    print(
      f"{name:<16} {d['fg_iou']:7.3f} {d['miou']:7.3f} {d['pixel_accuracy']:8.3f} "
      f"{d['max_fbeta']:7.3f}"
    )
  rule = result["color_threshold_rule"]
  print(
    f"color_threshold rule (oracle): {rule['channel']} {rule['polarity']} "
    f"{rule['threshold']}; rendering {result['render_images_per_second']:.0f} images/s; "
    f"{result['seconds']:.1f} s in all"
  )
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
      f.write("\n")


if __name__ == "__main__":
  main()
