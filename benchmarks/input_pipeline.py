"""Throughput of the training input pipeline (images/s delivered by train_iterator).

  python -m benchmarks.input_pipeline --resolution=64 \
      --json=benchmarks/results/input_pipeline_64.json

Two sources, each timed over --steps batches of --batch images, after --warmup batches:
* synthetic: the embedded dataset (rendered at R, square-resized to 1.125 R, random R crop).
  ``first_pass_images_per_s`` includes rendering (each image rendered once, then cached in
  memory); ``images_per_s`` is the steady state once the shard is cached (every epoch after the
  first), which is what a long training run sees.
* folder_jpeg: a temporary folder of --folder_images JPEGs (quality 90) at 2R, made from the
  synthetic dataset; every image is decoded from disk each time (no cache).
* lsun_lmdb: the same images as WebP values of a temporary lmdb database, as LSUN stores them;
  every value is read and decoded each time.
The consumer only pulls batches: these are upper bounds on what the pipeline can feed a
training step, with --num_workers decoding threads plus the prefetch thread.

With --grain (grain installed; it is not a dependency) the folder_jpeg workload also runs
through grain: MapDataset(shuffle, the same decode and crop per record, batch, to float),
read by --num_workers threads (ReadOptions) and by --num_workers processes (mp_prefetch): the
measurement that decides whether the data package moves onto grain.
"""

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

from layered_gan_jax.data import (
  image_io,  # pylint: disable=wrong-import-position
  synthetic,  # pylint: disable=wrong-import-position
  train_input,  # pylint: disable=wrong-import-position
  transforms,  # pylint: disable=wrong-import-position
)


def _time_batches(it, n: int, batch: int) -> float:
  start = time.perf_counter()
  for _ in range(n):
    next(it)
  return n * batch / (time.perf_counter() - start)


def _time_source(cfg, args) -> float:
  """Steady images/s of train_iterator(cfg) after the warm-up batches."""
  it = train_input.train_iterator(
    cfg, resolution=args.resolution, batch_size=args.batch, seed=0, process_index=0, process_count=1
  )
  _time_batches(it, args.warmup, args.batch)
  rate = _time_batches(it, args.steps, args.batch)
  it.close()
  return rate


def bench_synthetic(args) -> dict:
  n = args.synthetic_examples
  cfg = dict(
    name="synthetic", num_train_examples=n, num_workers=args.num_workers, synthetic_seed=1234
  )  # A seed of its own: nothing cached by earlier runs.
  it = train_input.train_iterator(
    cfg, resolution=args.resolution, batch_size=args.batch, seed=0, process_index=0, process_count=1
  )
  first_pass_batches = n // args.batch
  first = _time_batches(it, first_pass_batches, args.batch)
  _time_batches(it, args.warmup, args.batch)
  steady = _time_batches(it, args.steps, args.batch)
  it.close()
  return {
    "images_per_s": round(steady, 1),
    "first_pass_images_per_s": round(first, 1),
    "examples": n,
  }


def bench_folder(args) -> dict:
  r = args.resolution
  size = 2 * r
  render = (
    min(size, synthetic.RESOLUTIONS[-1]) if hasattr(synthetic, "RESOLUTIONS") else min(size, 128)
  )
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(args.folder_images):
      image, _ = synthetic.render_example("train", i, render)
      pil = Image.fromarray(np.asarray(image))
      if render != size:
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
      pil.save(os.path.join(tmp, f"{i:05d}.jpg"), quality=90)
    rate = _time_source(dict(name="folder", path=tmp, num_workers=args.num_workers), args)
  return {
    "images_per_s": round(rate, 1),
    "files": args.folder_images,
    "file_size": f"{size}x{size} JPEG q90",
  }


def _grain_record(files, resolution: int, size: int, index: int) -> np.ndarray:
  """One training image as our stream makes it: decode, square-resize, seeded random crop."""
  image = image_io.load_image(files[index])
  offset = transforms.crop_offsets(0, np.zeros(1, np.int64), np.array([index]), size - resolution)[
    0
  ]
  return transforms.train_transform(image, resolution, size, offset)


def bench_grain_folder(args) -> dict:
  """The folder_jpeg workload through grain, with threads and with worker processes."""
  import grain  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  flags.FLAGS.mark_as_parsed()  # grain reads its absl flags; this script has none.
  r = args.resolution
  size = 2 * r
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    files = []
    for i in range(args.folder_images):
      image, _ = synthetic.render_example("train", i, min(size, 128))
      pil = Image.fromarray(np.asarray(image)).resize((size, size), Image.Resampling.BICUBIC)
      files.append(os.path.join(tmp, f"{i:05d}.jpg"))
      pil.save(files[-1], quality=90)
    record = functools.partial(_grain_record, files, r, transforms.crop_size(r))
    dataset = (
      grain.MapDataset.range(len(files))
      .shuffle(seed=0)
      .repeat(None)
      .map(record)
      .batch(args.batch, drop_remainder=True)
      .map(transforms.to_float)
    )
    threads = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=args.num_workers, prefetch_buffer_size=2 * args.batch)
    )
    it = iter(threads)
    _time_batches(it, args.warmup, args.batch)
    out["threads_images_per_s"] = round(_time_batches(it, args.steps, args.batch), 1)
    processes = dataset.to_iter_dataset().mp_prefetch(
      grain.MultiprocessingOptions(num_workers=args.num_workers)
    )
    it = iter(processes)
    _time_batches(it, args.warmup, args.batch)
    out["processes_images_per_s"] = round(_time_batches(it, args.steps, args.batch), 1)
    del it
    ours = _time_source(dict(name="folder", path=tmp, num_workers=args.num_workers), args)
    out["ours_images_per_s"] = round(ours, 1)
  out.update(
    files=args.folder_images, file_size=f"{size}x{size} JPEG q90", grain_version=grain.__version__
  )
  return out


def bench_lmdb(args) -> dict:
  import io  # pylint: disable=g-import-not-at-top

  import lmdb  # pylint: disable=g-import-not-at-top

  r = args.resolution
  size = 2 * r
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "bench_lmdb")
    env = lmdb.open(path, map_size=1 << 30)
    with env.begin(write=True) as txn:
      for i in range(args.folder_images):
        image, _ = synthetic.render_example("train", i, min(size, 128))
        pil = Image.fromarray(np.asarray(image)).resize((size, size), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        pil.save(buf, format="WEBP", quality=90)
        txn.put(f"{i:08d}".encode(), buf.getvalue())
    env.close()
    rate = _time_source(dict(name="lsun_lmdb", path=path, num_workers=args.num_workers), args)
  return {
    "images_per_s": round(rate, 1),
    "records": args.folder_images,
    "value": f"{size}x{size} WebP q90",
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--resolution", type=int, default=64)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--steps", type=int, default=40, help="timed batches per source")
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1)
  p.add_argument("--synthetic_examples", type=int, default=1024)
  p.add_argument("--folder_images", type=int, default=300)
  p.add_argument(
    "--grain",
    action="store_true",
    help="only the folder_jpeg workload, ours against grain (threads, processes)",
  )
  p.add_argument("--json", default="")
  args = p.parse_args()
  if args.grain:
    result = {"grain_folder_jpeg": bench_grain_folder(args)}
  else:
    result = {
      "synthetic": bench_synthetic(args),
      "folder_jpeg": bench_folder(args),
      "lsun_lmdb": bench_lmdb(args),
    }
  result.update(
    {
      "resolution": args.resolution,
      "batch": args.batch,
      "num_workers": args.num_workers,
      "command": "python -m benchmarks.input_pipeline " + " ".join(sys.argv[1:]),
      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible "
      f"({platform.processor() or platform.platform()}), shared with other jobs",
      "load_average_1min_at_end": round(os.getloadavg()[0], 2),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
  )
  text = json.dumps(result, indent=2)
  print(text)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
