"""Runs a repository script with the synthetic dataset's layout constants overridden.

For the dataset-design experiment of the emergence benchmark (``dataset_variants.sh``):

  SYN_MARGIN=-0.15 SYN_RIM=0.8 python -m benchmarks.device.dataset_variant_launch \
      benchmarks/emergence.py --settings=default --seeds=0 ...

``SYN_MARGIN`` replaces ``synthetic.OBJECT_MARGIN`` (negative: objects may be cut by the
border), ``SYN_RIM`` replaces ``synthetic.RIM_PROBABILITY``, ``SYN_BG_TEXTURES`` (seven
comma-separated weights: flat, linear, stripes, checks, smooth field, clouds, radial) replaces the
background's texture-family weights. All three are read at render time and the
input pipeline renders in threads of this process, so the override reaches every image (train,
test, reference segmenter). The script runs through ``no_tf_launch.py`` (for machines without
TensorFlow). Results of an overridden dataset are not results of the dataset's version:
keep their run directories apart.
"""
import os
import runpy
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  from layered_gan_jax.datasets import synthetic  # pylint: disable=g-import-not-at-top
  if "SYN_MARGIN" in os.environ:
    synthetic.OBJECT_MARGIN = float(os.environ["SYN_MARGIN"])
  if "SYN_RIM" in os.environ:
    synthetic.RIM_PROBABILITY = float(os.environ["SYN_RIM"])
  if "SYN_BG_TEXTURES" in os.environ:
    value = os.environ["SYN_BG_TEXTURES"]
    try:
      weights = [float(w) for w in value.split(",")]
    except ValueError:
      weights = []
    if len(weights) != 7 or min(weights) < 0 or sum(weights) <= 0:
      sys.exit(f"SYN_BG_TEXTURES={value!r}: need 7 comma-separated numbers >= 0, not all 0 "
               "(flat, linear, stripes, checks, smooth field, clouds, radial)")
    synthetic._BG_TEXTURES = tuple(np.cumsum(weights).tolist())  # pylint: disable=protected-access
  print(f"dataset variant: OBJECT_MARGIN {synthetic.OBJECT_MARGIN}, RIM_PROBABILITY "
        f"{synthetic.RIM_PROBABILITY}, background texture cumulative weights "
        f"{synthetic._BG_TEXTURES}", flush=True)  # pylint: disable=protected-access
  # no_tf_launch.py takes sys.argv[1:] as the script and its flags (and only runs it where
  # TensorFlow is installed).
  runpy.run_path(os.path.join(ROOT, "benchmarks", "device", "no_tf_launch.py"),
                 run_name="__main__")


if __name__ == "__main__":
  main()
