"""Where each trained network lives in a workdir, and restoring it.

The GAN, the encoder and the distilled segmenter each keep their Orbax checkpoints in their own
folder of the workdir. The trainers resume through :func:`resume`; evaluation and
inference restore through the loaders (:func:`load_gan`, then :func:`load_encoder` on the
restored GAN, or :func:`load_segmenter`) and import no trainer. A checkpoint whose config
describes another network is refused by ``checks.compatibility``' ``check_saved_*`` (the same checks
main.py's preflight runs on the saved JSON before JAX starts).

Every restore here goes through ``Checkpointer.restore_latest`` (or, for an explicit step,
``Checkpointer.restore``), which verifies the restored arrays against the checksums saved with
them: a damaged latest step is skipped with one warning line and the previous complete step is
restored; if every step is damaged, ``errors.ConfigError``; an explicitly requested damaged
step is a ``ConfigError`` (``checkpoints.DamagedCheckpoint``). The loaders only skip: the
trainer's first save (``resume``'s checkpointer) moves a damaged step aside.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import ml_collections
from absl import logging
from etils import epath

from layered_gan_jax import errors, files, parallel
from layered_gan_jax.checks import compatibility
from layered_gan_jax.nets import build
from layered_gan_jax.nets.architecture import resolution_of
from layered_gan_jax.run import checkpoints, layout
from layered_gan_jax.training import states
from layered_gan_jax.training.encoder_setup import EncoderSetup
from layered_gan_jax.training.states import GANState


def _checkpointer(workdir: str, sub: str, items, keep: int = 3) -> checkpoints.Checkpointer:
  return checkpoints.Checkpointer(files.join(workdir, sub), items, keep)


def gan_checkpointer(workdir: str, keep: int = 3) -> checkpoints.Checkpointer:
  return _checkpointer(workdir, layout.GAN_DIR, layout.GAN_ITEMS, keep)


def encoder_checkpointer(workdir: str, keep: int = 3) -> checkpoints.Checkpointer:
  return _checkpointer(workdir, layout.ENCODER_DIR, layout.ENCODER_ITEMS, keep)


def segmenter_checkpointer(workdir: str, keep: int = 2) -> checkpoints.Checkpointer:
  return _checkpointer(workdir, layout.SEGMENTER_DIR, layout.SEGMENTER_ITEMS, keep)


def resume(
  ckpt: checkpoints.Checkpointer,
  fresh: Dict[str, Any],
  name: str,
  config=None,
  check: Optional[Callable] = None,
) -> Tuple[Dict[str, Any], Optional[int]]:
  """A trainer's start: the array items of the latest complete and intact checkpoint of
  ``ckpt``, restored with the shapes, dtypes and shardings of ``fresh`` (freshly initialised
  items), after ``check(saved_config, config, directory, step)`` has accepted the checkpoint's
  config; without a checkpoint, ``fresh`` itself. Returns ``(items, step)``, ``step`` None when
  nothing was restored. A damaged step is skipped (see the module docstring): ``step`` may be
  older than ``ckpt.latest_step()`` was before the call."""
  abstract = checkpoints.abstract_like(fresh)

  def restore_step(step: int) -> Dict[str, Any]:
    if check is not None:
      check(ckpt.read_json(step, "config"), config, ckpt.directory, step)
    return ckpt.restore(step, abstract)

  step, restored = ckpt.restore_latest(restore_step)
  if step is None:
    return fresh, None
  logging.info("Resumed the %s from the checkpoint of step %d in %s", name, step, ckpt.directory)
  return restored, step


def gan_items(gan_state: GANState) -> Dict[str, GANState]:
  """The GAN state as its checkpoint holds it: the state without its EMA, and the EMA
  generator apart (what inference restores alone)."""
  return {"state": gan_state.replace(ema_params=None), "ema": gan_state.ema_params}


def gan_state_of(items: Dict[str, Any]) -> GANState:
  """The inverse of :func:`gan_items`."""
  return items["state"].replace(ema_params=items["ema"])


def _replicated_shapes(init_fn):
  """Shapes, dtypes and replicated shardings of what ``init_fn(key)`` makes, without making it:
  the restore target of a checkpoint."""
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  repl = parallel.replicated()
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def abstract_gan_state(generator, critic, config) -> GANState:
  """Shapes, dtypes and (replicated) shardings of the GAN state, without computing it."""
  return _replicated_shapes(states.gan_init_fn(generator, critic, config))


def restore_gan_state(ckpt, step: int, abstract: GANState) -> GANState:
  """The whole GAN state of checkpoint ``step``."""
  return gan_state_of(ckpt.restore(step, gan_items(abstract)))


class LoadedGAN:
  """A trained GAN restored from a workdir for encoders, evaluation and inference."""

  def __init__(self, config, generator, critic, ema_params, d_params, stage, alpha, step):
    self.config, self.generator, self.critic = config, generator, critic
    self.ema_params, self.d_params = ema_params, d_params
    self.stage, self.alpha, self.step = stage, alpha, step

  @property
  def resolution(self) -> int:
    return resolution_of(self.stage)


def _load_gan_step(ckpt, directory: str, step: int, config, with_critic: bool) -> LoadedGAN:
  saved = ckpt.read_json(step, "config")
  if config is not None:
    compatibility.check_saved_model(saved, config, directory, step)
  saved_config = ml_collections.ConfigDict(saved)
  generator, critic = build.build_generator(saved_config), build.build_critic(saved_config)
  meta = ckpt.read_json(step, "meta")
  abstract = abstract_gan_state(generator, critic, saved_config)
  if with_critic:
    restored = restore_gan_state(ckpt, step, abstract)
    ema, d_params = restored.ema_params, restored.d_params
  else:
    ema, d_params = ckpt.restore(step, {"ema": abstract.ema_params})["ema"], None
  return LoadedGAN(
    saved_config, generator, critic, ema, d_params, int(meta["stage"]), float(meta["alpha"]), step
  )


def load_gan(
  workdir: str, config=None, with_critic: bool = False, step: Optional[int] = None
) -> LoadedGAN:
  """Restores the GAN checkpoint ``step`` of ``workdir`` (default: the latest intact one): the
  EMA generator (and the critic if ``with_critic``), built from the checkpoint's own config. If
  ``config`` is given, its model fields must match the checkpoint's."""
  directory = files.join(str(files.resolve(workdir)), layout.GAN_DIR)
  if not epath.Path(directory).is_dir():  # Checked first: Orbax would create the folder.
    raise errors.ConfigError(
      f"no GAN checkpoint in {directory}; train one first with --mode=train "
      "(or point --workdir at a trained run)"
    )
  ckpt = gan_checkpointer(workdir)
  try:
    if step is None:
      step, loaded = ckpt.restore_latest(
        lambda s: _load_gan_step(ckpt, directory, s, config, with_critic)
      )
      if step is None:
        raise errors.ConfigError(
          f"no complete GAN checkpoint in {directory}; train one first with --mode=train"
        )
      return loaded
    if step not in ckpt.all_steps():
      raise errors.ConfigError(
        f"no complete GAN checkpoint of step {step} in {directory} (steps: "
        f"{', '.join(map(str, ckpt.all_steps())) or 'none'})"
      )
    with ckpt.reading(step):  # A training writing here keeps the step while it is read.
      return _load_gan_step(ckpt, directory, step, config, with_critic)
  finally:
    ckpt.close()


def load_encoder(config, workdir: str, gan: LoadedGAN):
  """The latest intact encoder of ``workdir`` on its GAN ``gan`` (restored with its critic):
  returns (setup, encoder params)."""
  setup = EncoderSetup(config, gan)
  ckpt = encoder_checkpointer(workdir)

  def restore_step(step: int):
    compatibility.check_saved_encoder(ckpt.read_json(step, "config"), config, ckpt.directory, step)
    return ckpt.restore(step, {"state": _replicated_shapes(setup.init_fn())})["state"]

  try:
    step, restored = ckpt.restore_latest(restore_step)
  finally:
    ckpt.close()
  if step is None:
    raise errors.ConfigError(
      f"no encoder checkpoint in {ckpt.directory}; train one with --mode=train_encoder"
    )
  return setup, restored.params


def load_segmenter(workdir: str):
  """The selected (``best``) parameters of the latest intact distilled segmenter in
  ``workdir``, without the GAN: returns ``(model, params, meta)``; ``meta['resolution']`` is
  its input size."""
  ckpt = segmenter_checkpointer(workdir)

  def restore_step(step: int):
    saved = ckpt.read_json(step, "config")
    meta = ckpt.read_json(step, "meta")
    model = build.build_unet(ml_collections.ConfigDict(saved["segmenter"]))
    abstract = _replicated_shapes(lambda k: build.init_unet(model, meta["resolution"], k))
    return model, ckpt.restore(step, {"best": abstract})["best"], meta

  try:
    step, loaded = ckpt.restore_latest(restore_step)
  finally:
    ckpt.close()
  if step is None:
    raise errors.ConfigError(
      f"no distilled segmenter checkpoint in {ckpt.directory}; train one with "
      "--mode=train_segmenter (or choose --config.segment.route=encoder)"
    )
  return loaded
