"""Summary of a GPU throughput run (benchmarks/device/gpu_throughput.sh): ours vs the official code.

  python -m benchmarks.device.gpu_summary --dir=benchmarks/results/gpu_h200 \
      --json=benchmarks/results/gpu_h200.json

Reads ours (``r<R>_<dtype>.json`` from benchmarks/throughput.py) and the official code's
(``official_r<R>.log``, the ``ref_img_per_s=`` line) and, per setting, writes images/s, the ratio
ours / official, and utilization. The FLOPs per iteration are counted again HERE, by lowering the
same program (config, resolution, batch, dtype) with ``gan_steps.flops_of``: runs made before
that function counted the lowered program recorded the compiled GPU program's count, which
leaves out the cuDNN convolutions. Utilization is given against the matmul rate measured in the
same run (for float32 JAX's default precision, i.e. TF32 on this GPU; the official code's
convolutions also run in TF32, PyTorch's default for cuDNN) and against the vendor's dense peak
given with ``--peak_tf32`` / ``--peak_bf16`` (TFLOP/s).
"""

import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lowered_flops(config_path: str, resolution: int, batch: int, dtype: str) -> float:
  """FLOPs of one training iteration (global batch ``batch``), counted on the lowered program."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks.common import load_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets.architecture import stage_of  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import gan_steps, train_gan  # pylint: disable=g-import-not-at-top

  config = load_config(os.path.join(ROOT, config_path))[0]
  config.train.start_resolution = config.train.resolution = resolution
  config.model.dtype = dtype
  g, d = build.build_generator(config), build.build_critic(config)
  state = jax.eval_shape(lambda: train_gan.init_state(g, d, config))
  lowered = gan_steps.lower_train_step(
    g, d, config, stage_of(resolution), state, (batch, resolution, resolution, 3)
  )
  return gan_steps.flops_of(lowered)


def official_images_per_s(path: str):
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    found = re.findall(r"ref_img_per_s=([0-9.]+)", f.read())
  return float(found[-1]) if found else None


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--dir", required=True)
  p.add_argument("--json", default="")
  p.add_argument(
    "--peak_tf32", type=float, default=494.7, help="dense TF32 TFLOP/s (H100/H200 SXM)"
  )
  p.add_argument(
    "--peak_bf16", type=float, default=989.4, help="dense BF16 TFLOP/s (H100/H200 SXM)"
  )
  args = p.parse_args(argv)
  rows = []
  for path in sorted(glob.glob(os.path.join(args.dir, "r*_*.json"))):
    with open(path) as f:
      r = json.load(f)
    flops = lowered_flops(r["config"], r["resolution"], r["batch"], r["dtype"])
    achieved = flops / r["step_seconds_median"]
    bf16 = r["dtype"] == "bfloat16"
    matmul = r.get("matmul_bf16_flops_per_s") if bf16 else r["matmul_flops_per_s"]
    theirs = official_images_per_s(os.path.join(args.dir, f"official_r{r['resolution']}.log"))
    peak = (args.peak_bf16 if bf16 else args.peak_tf32) * 1e12
    rows.append(
      {
        "resolution": r["resolution"],
        "batch": r["batch"],
        "dtype": r["dtype"],
        "device": r["device_kind"],
        "jax_version": r["jax_version"],
        "date": r["date"],
        "ours_images_per_s": r["images_per_s"],
        "official_images_per_s": theirs,
        "ratio_ours_over_official": r["images_per_s"] / theirs if theirs else None,
        "official_dtype": "float32 (cuDNN convolutions in TF32, PyTorch's default)",
        "step_seconds_median": r["step_seconds_median"],
        "compile_seconds": r["compile_seconds"],
        "flops_per_iteration": flops,
        "flops_per_iteration_recorded_in_run": r["flops_per_iteration"],
        "achieved_flops_per_s": achieved,
        "matmul_flops_per_s_measured": matmul,
        "utilization_vs_measured_matmul": achieved / matmul if matmul else None,
        "vendor_dense_peak_flops_per_s": peak,
        "fraction_of_vendor_dense_peak": achieved / peak,
        "peak_memory_bytes": r["peak_memory_bytes"],
        "peak_memory_kind": r["peak_memory_kind"],
        "command": r["command"],
        "source": os.path.relpath(path, ROOT),
      }
    )
  lines = [
    "| px | batch | dtype | ours img/s | official img/s | ours/official | "
    "TFLOP/s | of measured matmul | of dense peak |",
    "|---" * 9 + "|",
  ]
  for row in rows:
    ratio = row["ratio_ours_over_official"]
    lines.append(
      f"| {row['resolution']} | {row['batch']} | {row['dtype']} | "
      f"{row['ours_images_per_s']:.1f} | "
      f"{format(row['official_images_per_s'], '.1f') if row['official_images_per_s'] else '-'} | {f'{ratio:.2f}x' if ratio else '-'} | "
      f"{row['achieved_flops_per_s'] / 1e12:.0f} | "
      f"{row['utilization_vs_measured_matmul']:.0%} | {row['fraction_of_vendor_dense_peak']:.0%} |"
    )
  print("\n".join(lines))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {
          "results": rows,
          "table": lines,
          "command": " ".join(
            ["python -m benchmarks.device.gpu_summary"] + list(argv or sys.argv[1:])
          ),
        },
        f,
        indent=2,
      )


if __name__ == "__main__":
  main()
