"""Runs a tiny GAN training in a fresh process (own device count / jax.distributed) and saves
the final parameters, EMA and both Adam states (counts and moments) to an .npz file. Used by the multi-device and multi-host tests.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.train_subprocess \
      --workdir=DIR --out=params.npz [--steps=3] [--coordinator=127.0.0.1:PORT
      --num_processes=2 --process_id=0] [--sigterm_after_steps=N] [--step_delay_s=S]

With --sigterm_after_steps the process sends itself SIGTERM after its N-th training step (a
preemption notice to this host alone); --step_delay_s slows every step so that the hosts have
time to agree on where to stop. A preempted run prints "preempted: <message>" and saves no .npz.
"""

import argparse
import os


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--coordinator", default="")
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--sigterm_after_steps", type=int, default=0)
  parser.add_argument("--step_delay_s", type=float, default=0.0)
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top

  if args.coordinator:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  import numpy as np  # pylint: disable=g-import-not-at-top

  if os.environ.get("GCS_TEST_EVENTS"):  # A gs:// workdir on the server of tests/gcs_server.py.
    from tests import gcs_server  # pylint: disable=g-import-not-at-top

    gcs_server.write_events_locally()

  from configs import tiny  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import errors  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import train_gan  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  # 8 px for 2 iterations, then 16 px: alpha 1/8 (fade-in), then 1.
  config.train.start_resolution = 8
  config.train.resolution = 16
  config.train.phase_images = 8
  config.train.batch_size = 8
  config.train.max_steps = args.steps
  config.train.log_every_steps = 1
  config.train.checkpoint_every_steps = 1000
  config.train.sample_every_steps = 1000
  print("devices", jax.device_count(), "processes", jax.process_count(), flush=True)
  if args.sigterm_after_steps or args.step_delay_s:
    _instrument_steps(args.sigterm_after_steps, args.step_delay_s)
  try:
    state = train_gan.train_and_evaluate(config, args.workdir)
  except errors.Preempted as e:
    print("preempted:", e, flush=True)
    return
  leaves = jax.tree_util.tree_flatten_with_path(
    (state.g_params, state.d_params, state.ema_params, state.g_opt, state.d_opt)
  )[0]
  arrays = {jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}
  if jax.process_index() == 0:
    np.savez(args.out, **arrays)


def _instrument_steps(sigterm_after: int, delay: float):
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.training import gan_steps  # pylint: disable=g-import-not-at-top

  original, calls = gan_steps.compile_train_step, [0]

  def compile_train_step(*args, **kwargs):
    compiled, *rest = original(*args, **kwargs)

    def step(*step_args):
      out = compiled(*step_args)
      calls[0] += 1
      if calls[0] == sigterm_after:
        os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(delay)
      return out

    return (step, *rest)

  gan_steps.compile_train_step = compile_train_step


if __name__ == "__main__":
  main()
