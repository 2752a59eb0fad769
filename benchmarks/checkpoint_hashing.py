"""What the checkpoints' array checksums cost, against the save's own time.

  python -m benchmarks.checkpoint_hashing --json=benchmarks/results/checkpoint_hashing.json

For two GAN states, saved as the trainer saves them (``loading.gan_items`` + config + meta,
through ``checkpoints.Checkpointer`` into a temporary folder, ``--repeats`` times):

* ``synthetic``: the quick start's initial state (configs/synthetic.py, ``train_gan.init_state``);
* ``car``: configs/car.py's state (every stage's parameters, both Adam states, the EMA copy),
  its shapes from ``jax.eval_shape`` and filled with random numbers on the host (nothing of the
  model compiled), then put on the device(s) replicated, as training holds it;
* ``tiny`` (not by default): configs/tiny.py's state the same way, for a smoke test
  (``--cases=tiny --repeats=1``: seconds).

Per state: the median ``Checkpointer.save`` time (which includes the checksums), and the median
time of three ways to checksum the same arrays, each apart:

* ``crc32_threads``: what ``checksums.items_checksums`` does (the chosen one): zlib.crc32 of
  each array's host bytes, the arrays of 1 MiB or more one per task of a thread pool;
* ``crc32_one_thread``: the same in one thread;
* ``xla_device``: computed where the arrays are, in one jitted function over every leaf (each
  bitcast to uint32 words; a position-weighted sum and a MurmurHash3-finaliser sum, 64 bits);
  its first call, which compiles, apart.

``ratio`` = checksums / (save - chosen checksums): the save's own time. The contract
(layered_gan_jax/run/checksums.py) is ``ratio`` <= 0.05 for the chosen one. With ``--restore``, the
median verified restore of the whole state and the chosen checksums' share of it.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.common import command_line, load_config, machine
from layered_gan_jax import parallel
from layered_gan_jax.nets import build
from layered_gan_jax.run import checkpoints, checksums, layout
from layered_gan_jax.training import loading, states, train_gan

# pylint: enable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {
  "synthetic": "configs/synthetic.py",
  "car": "configs/car.py",
  "tiny": "configs/tiny.py",
}  # tiny: as car (random numbers), a smoke test's size.


def synthetic_state(config):
  generator, critic = build.build_generator(config), build.build_critic(config)
  return train_gan.init_state(generator, critic, config)


def random_state(config, seed: int = 0):
  """The GAN state's shapes and dtypes (``jax.eval_shape``, nothing compiled) filled with
  random host numbers, replicated on the devices."""
  generator, critic = build.build_generator(config), build.build_critic(config)
  shapes = jax.eval_shape(states.gan_init_fn(generator, critic, config), jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)

  def fill(s):
    if np.issubdtype(s.dtype, np.floating):
      return rng.standard_normal(s.shape, np.float32).astype(s.dtype)
    return rng.integers(0, 2**16, s.shape).astype(s.dtype)

  return parallel.put_replicated(jax.tree.map(fill, shapes))


def crc32_one_thread(leaves):
  return [checksums.crc32(leaf) for leaf in leaves]


def _fmix32(h):
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _xla_digest(x):
  w = x.astype(jnp.uint32) if np.dtype(x.dtype).itemsize < 4 else x
  w = jax.lax.bitcast_convert_type(w, jnp.uint32).reshape(-1)
  i = jax.lax.iota(jnp.uint32, w.shape[0])
  return jnp.stack(
    [
      jnp.sum(w * (i * jnp.uint32(2) + jnp.uint32(1)), dtype=jnp.uint32),
      jnp.sum(_fmix32(w + i * jnp.uint32(0x9E3779B9)), dtype=jnp.uint32),
    ]
  )


@jax.jit
def _xla_digests(leaves):
  return jnp.stack([_xla_digest(x) for x in leaves])


def xla_device(leaves):
  """The alternative computed where the arrays are: ``uint32[leaves, 2]`` to the host."""
  return np.asarray(jax.device_get(_xla_digests(list(leaves))))


def _timed(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _median(values):
  return float(statistics.median(values))


def measure(name: str, config, gan_state, repeats: int, with_restore: bool) -> dict:
  items = loading.gan_items(gan_state)
  leaves = jax.tree.leaves(items)
  nbytes = int(sum(np.dtype(a.dtype).itemsize * int(np.prod(a.shape)) for a in leaves))
  result = {"config": CASES[name], "arrays": len(leaves), "bytes": nbytes, "repeats": repeats}
  folder = tempfile.mkdtemp(prefix=f"checkpoint_hashing_{name}_")
  try:
    ckpt = checkpoints.Checkpointer(folder, layout.GAN_ITEMS, max_to_keep=2)
    meta, saved_config = {"step": 0}, checkpoints.config_to_dict(config)
    saves = [
      _timed(lambda s=s: ckpt.save(s, dict(items, config=saved_config, meta=meta)))
      for s in range(1, repeats + 1)
    ]
    result.update(save_seconds_median=_median(saves), save_seconds_all=saves)
    ways = {
      "crc32_threads": lambda: checksums.items_checksums(items),
      "crc32_one_thread": lambda: crc32_one_thread(leaves),
      "xla_device": lambda: xla_device(leaves),
    }
    result["xla_device_first_call_seconds"] = _timed(ways["xla_device"])  # Compiles.
    for way, fn in ways.items():
      times = [_timed(fn) for _ in range(repeats)]
      result[way] = {
        "seconds_median": _median(times),
        "seconds_all": times,
        "gb_per_s": nbytes / _median(times) / 1e9,
      }
    own = result["save_seconds_median"] - result["crc32_threads"]["seconds_median"]
    result["save_own_seconds_median"] = own
    for way in ways:
      result[way]["ratio"] = result[way]["seconds_median"] / own
    result["ratio"] = result["crc32_threads"]["ratio"]
    if with_restore:
      target = checkpoints.abstract_like(items)
      step = ckpt.latest_step()
      restores = [_timed(lambda: ckpt.restore(step, target)) for _ in range(repeats)]
      result["restore_seconds_median"] = _median(restores)  # Includes the verification.
      result["verify_share_of_restore"] = result["crc32_threads"]["seconds_median"] / _median(
        restores
      )
    ckpt.close()
    return result
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--cases", default="synthetic,car", help="comma-separated: synthetic, car (tiny: a smoke test)"
  )
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--restore", action="store_true", help="also time the verified restore")
  p.add_argument("--json", default="", help="write the results here")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  result = {
    "command": command_line("benchmarks.checkpoint_hashing", argv),
    "machine": machine(),
    "device": str(jax.devices()[0].device_kind),
    "devices": jax.device_count(),
    "date": datetime.date.today().isoformat(),
    "algorithm": checksums.ALGORITHM,
    "cases": {},
  }
  for name in [c for c in args.cases.split(",") if c]:
    if name not in CASES:
      sys.exit(f"error: unknown case {name!r}; choose from {sorted(CASES)}")
    config, _ = load_config(os.path.join(REPO, CASES[name]))
    gan_state = synthetic_state(config) if name == "synthetic" else random_state(config)
    r = measure(name, config, gan_state, args.repeats, args.restore)
    del gan_state
    result["cases"][name] = r
    print(
      f"{name}: {r['arrays']} arrays, {r['bytes'] / 2**20:.1f} MiB: save "
      f"{r['save_seconds_median']:.3f} s (own {r['save_own_seconds_median']:.3f} s); "
      + ", ".join(
        f"{way} {r[way]['seconds_median']:.4f} s = {100 * r[way]['ratio']:.2f} %"
        for way in ("crc32_threads", "crc32_one_thread", "xla_device")
      )
      + f" (xla first call {r['xla_device_first_call_seconds']:.2f} s)"
      + (f"; verified restore {r['restore_seconds_median']:.3f} s" if args.restore else ""),
      flush=True,
    )
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
    print(f"wrote {args.json}")
  return result


if __name__ == "__main__":
  sys.exit(0 if main() else 1)
