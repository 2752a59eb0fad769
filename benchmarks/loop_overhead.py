"""The GAN's training loop against its compiled step: how much host time per iteration does not
overlap the device's work?

  python -m benchmarks.loop_overhead [--preset=scale|tiny] [--iterations=N]
      [--json=benchmarks/results/loop_overhead.json] [--config.FIELD=VALUE ...]

In one process, at the same shapes:

* ``step``: the compiled step (``gan_steps.compile_train_step``) called ``N`` times on one batch
  already on the device, the state fed back; wall time from a synchronised start to the last
  state ready, divided by ``N``.
* ``loop``: ``train_gan.train_and_evaluate`` itself, one progressive stage, ``warm + N``
  iterations with the recipe's log period and its data pipeline, preemption check, metric
  recording and periodic actions; wall time between the log steps ``warm`` and ``warm + N``
  (the metrics of a log step are fetched, so both ends are synchronised), divided by ``N``.
  The end-of-run sample grid and checkpoint fall after the window.

``host_overhead = loop - step`` is the host's time per iteration that the device's work does
not hide, reported as a fraction of the step's own time. Presets: ``scale`` is the scale
experiment's recipe (configs/synthetic.py at 32 px, batch 64, lr 1e-3, a log line every 200
iterations: benchmarks/device/scale.py); ``tiny`` is configs/tiny.py at 8 px.

The loop runs in three settings, side by side: ``before`` (``train.device_prefetch=0``: each
batch put on the devices when the step asks for it; one iteration per call), ``prefetch`` (the
default: two batches ahead) and ``prefetch + K per call`` (``train.steps_per_call=K``,
``--steps_per_call``; skipped if 1).
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.common import apply_overrides, command_line, load_config, machine  # noqa: E402

PRESETS = {
  "scale": (
    "configs/synthetic.py",
    {
      "train.batch_size": 64,
      "train.lr": 1e-3,
      "train.log_every_steps": 200,
      "train.start_resolution": 32,
      "train.resolution": 32,
    },
  ),
  "tiny": (
    "configs/tiny.py",
    {"train.start_resolution": 8, "train.resolution": 8, "train.log_every_steps": 50},
  ),
}


def build(args):
  path, preset = PRESETS[args.preset]
  config, applied = load_config(os.path.join(REPO, path), args.overrides)
  apply_overrides(config, {k: v for k, v in preset.items() if k not in applied})
  config.train.fid_every_images = 0
  return config


def time_step(config, iterations: int) -> float:
  """Seconds per call of the compiled step on one device batch (see the module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from layered_gan_jax import parallel  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import train_input  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import gan_steps, train_gan  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training.schedule import Schedule  # pylint: disable=g-import-not-at-top

  stage = Schedule(config.train, config.model.channels).stages[0]
  generator, critic = build.build_generator(config), build.build_critic(config)
  state = train_gan.init_state(generator, critic, config)
  shape = (stage.batch_size, stage.resolution, stage.resolution, 3)
  step, _, _ = gan_steps.compile_train_step(generator, critic, config, stage.stage, state, shape)
  with train_input.train_iterator(
    config.data,
    resolution=stage.resolution,
    batch_size=parallel.per_process_batch(stage.batch_size),
    seed=config.seed,
  ) as it:
    real = parallel.put_batch(next(it)["image"])
  alpha, lr = np.float32(stage.alpha(0)), np.float32(stage.lr)
  for _ in range(3):
    state, _ = step(state, real, alpha, lr)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(iterations):
    state, metrics = step(state, real, alpha, lr)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - start) / iterations


def time_loop(config, iterations: int, steps_per_call: int = 1) -> dict:
  """Seconds per iteration of train_gan's loop between two synchronised log steps."""
  from layered_gan_jax.training import loop as loop_lib  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import train_gan  # pylint: disable=g-import-not-at-top

  every = int(config.train.log_every_steps)
  warm = every * max(1, -(-8 // every))  # A log step after >= 8 iterations.
  iterations = every * max(1, round(iterations / every))
  config.train.max_steps = warm + iterations
  config.train.checkpoint_every_steps = config.train.sample_every_steps = 10**9
  if "steps_per_call" in config.train:  # (Absent before the loop work: one per call.)
    config.train.steps_per_call = steps_per_call
  logged = {}
  original = loop_lib.TrainLoop.record

  def record(self, step, *args, **kwargs):
    out = original(self, step, *args, **kwargs)
    if out is not None:
      logged[step] = time.perf_counter()
    return out

  loop_lib.TrainLoop.record = record
  try:
    with tempfile.TemporaryDirectory() as workdir:
      train_gan.train_and_evaluate(config, workdir)
  finally:
    loop_lib.TrainLoop.record = original
  seconds = (logged[warm + iterations] - logged[warm]) / iterations
  return {
    "seconds_per_iteration": seconds,
    "iterations": iterations,
    "warmup": warm,
    "log_every_steps": every,
    "steps_per_call": steps_per_call,
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="scale")
  p.add_argument("--iterations", type=int, default=0, help="0: 400 (scale) / 200 (tiny)")
  p.add_argument(
    "--steps_per_call", type=int, default=8, help="K of the third setting (1: no third setting)"
  )
  p.add_argument("--json", default="")
  args, args.overrides = p.parse_known_args(argv)
  iterations = args.iterations or (400 if args.preset == "scale" else 200)
  config = build(args)
  from layered_gan_jax import runtime  # pylint: disable=g-import-not-at-top

  runtime.configure_xla_cpu(config.runtime.xla_cpu_kernels)
  step = time_step(config, min(iterations, 200))
  settings = [("before", 0, 1), ("prefetch", 2, 1)]
  if args.steps_per_call > 1:
    settings.append((f"prefetch + {args.steps_per_call} per call", 2, args.steps_per_call))
  if "device_prefetch" not in config.train:  # A checkout before the loop work.
    settings = [("code before the loop work", 0, 1)]
  result = {
    "command": command_line("benchmarks.loop_overhead", argv),
    "machine": machine(),
    "date": datetime.date.today().isoformat(),
    "preset": args.preset,
    "batch": int(config.train.batch_size),
    "resolution": int(config.train.resolution),
    "step_seconds": step,
    "loops": [],
  }
  print(f"{args.preset}: step {step * 1e3:.2f} ms", flush=True)
  _write(args, result)
  for name, prefetch, per_call in settings:  # Written after each: a time limit keeps the rest.
    config = build(args)
    if "device_prefetch" in config.train:
      config.train.device_prefetch = prefetch
    row = dict(time_loop(config, iterations, per_call), setting=name, device_prefetch=prefetch)
    row["host_overhead_s"] = row["seconds_per_iteration"] - step
    row["host_overhead_vs_step"] = row["host_overhead_s"] / step
    result["loops"].append(row)
    print(
      f"  loop, {row['setting']}: "
      f"{row['seconds_per_iteration'] * 1e3:.2f} ms per iteration, host overhead "
      f"{row['host_overhead_s'] * 1e3:+.2f} ms = {row['host_overhead_vs_step']:+.1%} of the "
      "step",
      flush=True,
    )
    _write(args, result)
  return result


def _write(args, result) -> None:
  if not args.json:
    return
  results = {}
  if os.path.exists(args.json):
    with open(args.json) as f:
      results = json.load(f)
  results[args.preset] = result
  with open(args.json, "w") as f:
    json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
