"""What the compiled training step keeps in memory, and which part of the iteration needs it.

  python -m benchmarks.step_memory --config=configs/car.py --resolution=128 --batch=32 \
      --json=benchmarks/results/step_memory_car_128_cpu.json

Compiles (ahead of time, nothing runs, so the model's full size compiles on a small machine) the
whole iteration as training compiles it (``gan_steps.lower_train_step``, with the state
donated) and, apart, the three parts of it that hold large activations, each on the same
shapes:

* ``critic_grad``: the critic's gradient of its whole loss (real and fake scores, drift, the
  gradient penalty's nested ``jax.grad``);
* ``critic_grad_no_penalty``: the same loss without the penalty (what the penalty adds is the
  difference);
* ``generator_grad``: the generator's gradient (both generators, the perturbation, the critic's
  score of the composite, the mask losses).

For each, XLA's memory analysis of the compiled program (``temp_size_in_bytes``: the
temporaries; arguments and outputs apart), without and with ``train.remat_penalty``. The
figures are the compiler's buffer assignment for this backend: on a GPU, also what cuDNN's
autotuning and the allocator add at run time is not in them (``benchmarks/throughput.py``
reports the allocator's peak).
"""

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import throughput  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.common import command_line, machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax.nets.architecture import resolution_of  # pylint: disable=g-import-not-at-top,wrong-import-position
from layered_gan_jax.training import gan_steps, loading, losses  # pylint: disable=g-import-not-at-top,wrong-import-position

MIB = 2**20


def _parts(generator, critic, config, stage: int, batch: int):
  """``{name: (function, abstract arguments)}`` of the iteration's parts (not jitted)."""
  l, r = config.loss, resolution_of(stage)
  alpha = jnp.float32(1.0)

  def critic_fn(d_params):
    return lambda x: critic.apply({"params": d_params}, x, stage=stage, alpha=alpha)

  def critic_grad(d_params, real, fake, e):
    return jax.grad(
      lambda p: losses.critic_loss(
        critic_fn(p),
        real,
        fake,
        e,
        gp_weight=l.gp_weight,
        drift_weight=l.drift_weight,
        remat_penalty=config.train.remat_penalty,
      )[0]
    )(d_params)

  def critic_grad_no_penalty(d_params, real, fake):
    def loss(p):
      d_real, d_fake = critic_fn(p)(real), critic_fn(p)(fake)
      return jnp.mean(d_fake) - jnp.mean(d_real) + l.drift_weight * jnp.mean(jnp.square(d_real))

    return jax.grad(loss)(d_params)

  def generator_grad(g_params, d_params, key):
    draws = gan_steps.draw_iteration(generator, config, stage, key, batch)["generator"]

    def loss(p):
      _, perturbed, fake = gan_steps.generate_from_draws(generator, config, stage, p, draws, alpha)
      return losses.generator_loss(
        critic_fn(d_params)(fake),
        perturbed["mask"],
        eta=l.min_mask_coverage,
        size_weight=l.mask_size_weight,
        binary_weight=l.binarization_weight,
        eta_max=l.max_mask_coverage,
      )[0]

    return jax.grad(loss)(g_params)

  state = loading.abstract_gan_state(generator, critic, config)
  images = jax.ShapeDtypeStruct((batch, r, r, 3), jnp.float32)
  e = jax.ShapeDtypeStruct((batch, 1, 1, 1), jnp.float32)
  key = jax.ShapeDtypeStruct((2,), jnp.uint32)
  return {
    "critic_grad": (critic_grad, (state.d_params, images, images, e)),
    "critic_grad_no_penalty": (critic_grad_no_penalty, (state.d_params, images, images)),
    "generator_grad": (generator_grad, (state.g_params, state.d_params, key)),
  }


def measure(config, stage: int, batch: int) -> dict:
  """The memory analysis of the step and of each part, for the config as it is."""
  generator, critic = build.build_generator(config), build.build_critic(config)
  state = loading.abstract_gan_state(generator, critic, config)
  r = resolution_of(stage)
  out = {
    "step": throughput.compiled_memory(
      gan_steps.lower_train_step(
        generator, critic, config, stage, state, (batch, r, r, 3)
      ).compile()
    )
  }
  for name, (fn, args) in _parts(generator, critic, config, stage, batch).items():
    out[name] = throughput.compiled_memory(jax.jit(fn).lower(*args).compile())
  return out


def parse_args(argv=None):
  p = argparse.ArgumentParser(
    description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  throughput.add_step_arguments(p)
  p.add_argument("--json", default="", help="write the results here")
  args, args.config_overrides = p.parse_known_args(argv)  # --config.FIELD=VALUE ...
  return args


def summary(result: dict) -> str:
  lines = [
    f"{result['resolution']} px, batch {result['batch']}, {result['dtype']} on "
    f"{result['device']}: temporaries / arguments + outputs (MiB)"
  ]
  for remat in ("off", "on"):
    for name, m in result[f"remat_penalty_{remat}"].items():
      if m:
        lines.append(
          f"  remat_penalty {remat:3s} {name:24s} {m['temp_size_in_bytes'] / MIB:9.1f}"
          f" / {(m['argument_size_in_bytes'] + m['output_size_in_bytes']) / MIB:8.1f}"
        )
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  config, stage, batch, _ = throughput.prepare_config(args)
  result = {
    "command": command_line("benchmarks.step_memory", argv),
    "machine": machine(),
    "device": str(jax.devices()[0].device_kind),
    "devices": jax.device_count(),
    "date": datetime.date.today().isoformat(),
    "resolution": resolution_of(stage),
    "batch": batch,
    "dtype": config.model.dtype,
    "overrides": args.overrides,
  }
  for remat in (False, True):
    config.train.remat_penalty = remat
    result[f"remat_penalty_{'on' if remat else 'off'}"] = measure(config, stage, batch)
  print(summary(result), flush=True)
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
    print(f"wrote {args.json}")
  return result


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
