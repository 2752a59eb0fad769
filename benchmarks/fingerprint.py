"""The behaviour of the command line as one JSON of hashes, to prove a refactoring changes none.

  nice -n 19 python benchmarks/fingerprint.py --out=/tmp/fp_before.json
  ... refactor ...
  nice -n 19 python benchmarks/fingerprint.py --out=/tmp/fp_after.json --compare=/tmp/fp_before.json

Runs every mode of main.py on configs/tiny.py (train stopped inside a stage then resumed across
the stage changes to its end, train_encoder, train_segmenter, evaluate, sample, segment,
pipeline over the finished workdir) and hashes what they leave: every array of every checkpoint
(restored with Orbax), every scalar the runs logged (tag, step, value; not the wall time),
metrics.json, every PNG and JSON result; plus the exit code and exact stderr of every refusal
in tests/test_main.py's table of bad inputs (docs/reliability.md). Each run's exit code is
recorded too. The compiled programs are those of the test suite (LLVM optimisation level 0).
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))


def _env(extra=None):
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env["CUDA_VISIBLE_DEVICES"] = ""
  # A persistent compilation cache across runs: the same programs, compiled once.
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "fp_jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  env["XLA_FLAGS"] = " ".join(
    [env.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
  ).strip()
  env.update(extra or {})
  return env


def _main(args, extra_env=None, timeout=900):
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "main.py")] + args,
    cwd=REPO,
    env=_env(extra_env),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _tree_sha(tree) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    h.update(jax.tree_util.keystr(path).encode())
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _checkpoints(workdir, out, prefix):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  checkpointer = ocp.PyTreeCheckpointer()
  for sub in sorted(os.listdir(workdir)):
    if not sub.endswith("checkpoints"):
      continue
    for step in sorted(os.listdir(os.path.join(workdir, sub))):
      for item in sorted(os.listdir(os.path.join(workdir, sub, step))):
        path = os.path.join(workdir, sub, step, item)
        if not os.path.isdir(path):
          continue
        if os.path.exists(os.path.join(path, "metadata")) and not os.path.exists(
          os.path.join(path, "_METADATA")
        ):  # A JSON item.
          with open(os.path.join(path, "metadata"), "rb") as f:
            out[f"{prefix}/ckpt/{sub}/{step}/{item}"] = _sha(f.read())
        else:
          out[f"{prefix}/ckpt/{sub}/{step}/{item}"] = _tree_sha(checkpointer.restore(path))


_TIMINGS = ("images_per_s", "steps_per_sec", "uptime")


def _scalars(workdir, out, prefix):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  for dirpath, _, filenames in os.walk(workdir):
    for name in sorted(filenames):
      if "tfevents" not in name:
        continue
      values = []
      for event in tf.compat.v1.train.summary_iterator(os.path.join(dirpath, name)):
        for v in event.summary.value:
          if v.tag in _TIMINGS:  # Wall-clock measurements: they differ between any two runs.
            continue
          if v.HasField("simple_value"):
            values.append((v.tag, event.step, repr(v.simple_value)))
          elif v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "scalars":
            values.append((v.tag, event.step, repr(tf.make_ndarray(v.tensor).tolist())))
          elif v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "images":
            values.append((v.tag, event.step, _sha(v.tensor.SerializeToString())))
      rel = os.path.relpath(dirpath, workdir)
      out[f"{prefix}/events/{rel}"] = _sha(json.dumps(sorted(values)).encode())
      out[f"{prefix}/events/{rel}/count"] = len(values)


def _results(root, out, prefix, tmp):
  for dirpath, _, filenames in os.walk(root):
    if "checkpoints" in dirpath:
      continue
    for name in sorted(filenames):
      if name.endswith((".png", ".json", ".npy")):
        path = os.path.join(dirpath, name)
        with open(path, "rb") as f:  # The scratch folder's name is random: replaced.
          data = f.read().replace(tmp.encode(), b"{tmp}")
        out[f"{prefix}/{os.path.relpath(path, root)}"] = _sha(data)


def _run(out, key, args, extra_env=None):
  result = _main(args, extra_env)
  out[f"exit/{key}"] = result.returncode
  if result.returncode != 0:
    print(result.stderr[-3000:], file=sys.stderr)
  print(f"{key}: exit {result.returncode}", file=sys.stderr, flush=True)


def modes(root, out):
  work = os.path.join(root, "run")
  base = ["--config=configs/tiny.py", f"--workdir={work}"]
  _run(out, "train_to_3", base + ["--config.train.max_steps=3"])
  _run(out, "train_resume", base)
  _run(out, "train_encoder", base + ["--mode=train_encoder"])
  _run(out, "train_segmenter", base + ["--mode=train_segmenter"])
  _run(out, "evaluate", base + ["--mode=evaluate"])
  _run(
    out,
    "sample",
    base
    + [
      "--mode=sample",
      f"--output={root}/samples",
      "--num_samples=4",
      "--truncation=0.7",
      "--seed=3",
    ],
  )
  images = os.path.join(root, "images")
  os.makedirs(images)
  for path in sorted(glob.glob(os.path.join(root, "samples", "*", "*.png")))[:3]:
    shutil.copy(
      path,
      os.path.join(images, os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)),
    )
  _run(out, "segment", base + ["--mode=segment", f"--input={images}", f"--output={root}/seg"])
  _checkpoints(work, out, "run")
  _scalars(work, out, "run")
  _results(work, out, "run", root)
  _results(os.path.join(root, "samples"), out, "samples", root)
  _results(os.path.join(root, "seg"), out, "segment", root)
  # The pipeline from scratch on another workdir (train, encoder, segmenter, evaluate).
  pipe = os.path.join(root, "pipe")
  _run(
    out,
    "pipeline",
    [
      "--config=configs/tiny.py",
      f"--workdir={pipe}",
      "--mode=pipeline",
      "--config.train.max_steps=5",
    ],
  )
  _checkpoints(pipe, out, "pipe")
  _scalars(pipe, out, "pipe")
  _results(pipe, out, "pipe", root)


def refusals(root, out):
  import test_main  # pylint: disable=g-import-not-at-top

  scene = getattr(test_main.scene, "__wrapped__", None)
  if scene is None:
    scene = test_main.scene.__pytest_wrapped__.obj
  scene_root = scene(
    type(
      "F",
      (),
      {
        "mktemp": staticmethod(
          lambda name: __import__("pathlib").Path(tempfile.mkdtemp(dir=root, prefix=name))
        )
      },
    )()
  )
  for case, args, _ in test_main.REFUSALS:
    fill = lambda text: text.format(run=scene_root / "run", root=scene_root)
    env = test_main.FOUR_DEVICES if case == "batch vs devices" else None
    result = _main([fill(a) for a in args], env)
    stderr = result.stderr.replace(str(scene_root), "{root}")
    # A writer lease names its holder: this process, this host, the seconds since it renewed.
    stderr = re.sub(
      r"process \d+ on host \S+ since (\S+), renewed \d+ s ago",
      r"process PID on host HOST since \1, renewed N s ago",
      stderr,
    )
    out[f"refusal/{case}"] = {"exit": result.returncode, "stderr": stderr}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="JSON file of the hashes")
  parser.add_argument("--compare", default=None, help="an earlier JSON: print the differences")
  parser.add_argument("--skip_modes", action="store_true", help="only the refusals")
  args = parser.parse_args()
  out = {}
  start = time.time()
  root = tempfile.mkdtemp(prefix="fingerprint_")
  try:
    refusals(root, out)
    if not args.skip_modes:
      modes(root, out)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
  print(f"{len(out)} hashes in {time.time() - start:.0f} s -> {args.out}")
  if args.compare:
    with open(args.compare) as f:
      before = json.load(f)
    diff = sorted(k for k in set(before) | set(out) if before.get(k) != out.get(k))
    for k in diff:
      print(f"DIFF {k}: {before.get(k)!r} -> {out.get(k)!r}")
    print(f"{len(set(before) | set(out)) - len(diff)} identical, {len(diff)} different")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
  main()
