"""layered_gan_jax: unsupervised object segmentation by perturbed layered GANs (JAX/Flax).

The package is a house of rooms, each a subpackage with one role. A room imports only from the
rooms listed before it in :data:`ROOMS` and from the ground floor (the modules at the top
level, which import no room); tests/test_house.py holds the code to this order.

Ground floor: ``errors`` (the exceptions and exit statuses), ``files`` (paths, local or
``gs://``, and writing bytes), ``console`` (what the terminal shows), ``parallel`` (devices and
shardings), ``runtime`` (XLA flags), ``names`` (modes, routes, baselines), ``seeds`` (every
random stream's offset), ``trees`` (nested dicts flattened), ``visualization`` (image grids,
PNGs).

Rooms, in order:

* ``data``: every image the networks read (training streams, labelled evaluation sets, the
  embedded synthetic dataset, LSUN, CUB, tfds, image decoding).
* ``nets``: the networks and what they compute (generator, critic, encoder, U-Net, Inception,
  layers, compositing and recomposition, the sampler of a frozen generator, building them from
  a config).
* ``run``: the run folder (its layout, the Orbax checkpoints with their checksums, the writer's
  lease).
* ``checks``: what runs before any work, without JAX (the fields' rules, the config as a whole,
  the data, checkpoint compatibility, preflight).
* ``metrics``: the scores (segmentation metrics, baselines, FID / KID).
* ``training``: the three trainers and what they share (loop, states, optimiser, schedule,
  losses, preemption, collapse watch, loading trained networks).
* ``evaluation``: the modes that use a trained run (evaluate, fid, sample, segment), and the
  Python API (``evaluation/api.py``).

The Python API's names are importable from the package itself (``from layered_gan_jax import
load_run``); they are imported when first used, so that ``import layered_gan_jax`` stays free of
JAX (main.py checks every input before JAX starts).
"""

__version__ = "0.1.0"

ROOMS = ("data", "nets", "run", "checks", "metrics", "training", "evaluation")

API = ("load_run", "Run", "score_masks", "Generator", "Segmenter")
"""The Python API (layered_gan_jax/evaluation/api.py), importable from the package."""


def __getattr__(name):
  if name in API:
    from layered_gan_jax.evaluation import api  # pylint: disable=g-import-not-at-top

    return getattr(api, name)
  raise AttributeError(f"module 'layered_gan_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(API))
