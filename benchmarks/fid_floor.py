"""The FID / KID floor of a dataset: its real test images against the cached statistics of its
real training images (what a perfect generator would score with as many samples), and the
FID network's speed on this machine.

  python -m benchmarks.fid_floor --config=configs/synthetic.py --images=500

Uses the config's data, ``train.resolution`` and ``eval.fid_real_images`` (the same real
statistics ``--mode=evaluate`` uses); writes ``benchmarks/results/fid_floor.json``.
"""

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--config", default=os.path.join(REPO, "configs", "synthetic.py"))
  p.add_argument("--images", type=int, default=500, help="test images scored")
  p.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "fid_floor.json"))
  args, overrides = p.parse_known_args(argv)
  from benchmarks.common import load_config, machine  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import files, visualization  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top

  config = load_config(args.config, overrides)[0]
  resolution = int(config.train.resolution)
  extractor = fid.extractor_for(config.eval.fid_weights)
  extractor(np.zeros((extractor.batch_size, resolution, resolution, 3), np.uint8))  # Compile.
  t = time.time()
  real = fid.real_statistics(extractor, config.data, resolution, config.eval.fid_real_images)
  real_seconds = time.time() - t
  batches = evaluate.load_split(
    data_config.eval_data_config(config), resolution, extractor.batch_size, args.images
  ).batches
  images = visualization.to_uint8(np.concatenate([x[valid] for x, valid in batches]))
  t = time.time()
  feats = extractor(images)
  seconds = time.time() - t
  result = {
    "fid": fid.fid_against_features(real["mu"], real["sigma"], feats),
    "kid": fid.kid(real["features"], feats),
    "test_images": int(len(images)),
    "real_images": int(config.eval.fid_real_images),
    "resolution": resolution,
    "dataset": config.data.name,
    "real_statistics": fid.cache_key(config.data, resolution, config.eval.fid_real_images),
    "real_statistics_seconds": round(real_seconds, 1),
    "seconds_per_1000_images": round(1000 * seconds / len(images), 1),
    "command": " ".join(["python -m benchmarks.fid_floor"] + (argv or sys.argv[1:])),
    "machine": machine(),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  files.write_json(args.json, result)
  print(json.dumps(result, indent=1))
  return result


if __name__ == "__main__":
  main()
