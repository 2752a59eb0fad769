"""Where each trained network lives in a workdir, and restoring it for use.

The GAN, the encoder and the distilled segmenter each keep their Orbax checkpoints in their own
folder of the workdir. The trainers resume from them; evaluation and inference restore through
this module and import no trainer.
"""

from typing import Optional

import jax
import ml_collections
from etils import epath

from layered_gan_jax import checkpointing, config_validation, errors, files, models, parallel, state
from layered_gan_jax.architecture import resolution_of
from layered_gan_jax.encoder_setup import EncoderSetup
from layered_gan_jax.state import GANState

GAN_DIR = "checkpoints"
GAN_ITEMS = ("state", "ema", "config", "meta")  # ema: the EMA generator alone, for inference
ENCODER_DIR = "encoder_checkpoints"
ENCODER_ITEMS = ("state", "config", "meta")
SEGMENTER_DIR = "segmenter_checkpoints"
SEGMENTER_ITEMS = ("state", "best", "config", "meta")
# Encoder fields that decide its parameters' shapes (a checkpoint restores only with the same).
ENCODER_SHAPE_FIELDS = ("target", "width", "max_width", "blocks_per_stage", "predict_placement")


def _checkpointer(workdir: str, sub: str, items, keep: int = 3) -> checkpointing.Checkpointer:
  return checkpointing.Checkpointer(files.join(workdir, sub), items, keep)


def gan_checkpointer(workdir: str, keep: int = 3) -> checkpointing.Checkpointer:
  return _checkpointer(workdir, GAN_DIR, GAN_ITEMS, keep)


def encoder_checkpointer(workdir: str, keep: int = 3) -> checkpointing.Checkpointer:
  return _checkpointer(workdir, ENCODER_DIR, ENCODER_ITEMS, keep)


def segmenter_checkpointer(workdir: str, keep: int = 2) -> checkpointing.Checkpointer:
  return _checkpointer(workdir, SEGMENTER_DIR, SEGMENTER_ITEMS, keep)


def _replicated_shapes(init_fn):
  """Shapes, dtypes and replicated shardings of what ``init_fn(key)`` makes, without making it:
  the restore target of a checkpoint."""
  shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(0))
  repl = parallel.replicated()
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)


def abstract_gan_state(generator, critic, config) -> GANState:
  """Shapes, dtypes and (replicated) shardings of the GAN state, without computing it."""
  return _replicated_shapes(state.gan_init_fn(generator, critic, config))


def restore_gan_state(ckpt, step: int, abstract: GANState) -> GANState:
  """The whole GAN state of checkpoint ``step`` (saved as the state without its EMA, and the
  EMA generator apart)."""
  restored = ckpt.restore(step, {"state": abstract.replace(ema_params=None),
                                 "ema": abstract.ema_params})
  return restored["state"].replace(ema_params=restored["ema"])


class LoadedGAN:
  """A trained GAN restored from a workdir for encoders, evaluation and inference."""

  def __init__(self, config, generator, critic, ema_params, d_params, stage, alpha, step):
    self.config, self.generator, self.critic = config, generator, critic
    self.ema_params, self.d_params = ema_params, d_params
    self.stage, self.alpha, self.step = stage, alpha, step

  @property
  def resolution(self) -> int:
    return resolution_of(self.stage)


def load_gan(workdir: str, config=None, with_critic: bool = False,
             step: Optional[int] = None) -> LoadedGAN:
  """Restores the GAN checkpoint ``step`` of ``workdir`` (default: the latest): the EMA
  generator (and the critic if ``with_critic``), built from the checkpoint's own config. If
  ``config`` is given, its model fields must match the checkpoint's."""
  directory = files.join(str(files.resolve(workdir)), GAN_DIR)
  if not epath.Path(directory).is_dir():  # Checked first: Orbax would create the folder.
    raise errors.ConfigError(
        f"no GAN checkpoint in {directory}; train one first with --mode=train "
        "(or point --workdir at a trained run)")
  ckpt = gan_checkpointer(workdir)
  if step is None:
    step = ckpt.latest_step()
    if step is None:
      raise errors.ConfigError(
          f"no complete GAN checkpoint in {directory}; train one first with --mode=train")
  elif step not in ckpt.all_steps():
    raise errors.ConfigError(
        f"no complete GAN checkpoint of step {step} in {directory} (steps: "
        f"{', '.join(map(str, ckpt.all_steps())) or 'none'})")
  saved = ckpt.read_json(step, "config")
  if config is not None:
    diffs = config_validation.model_differences(saved, checkpointing.config_to_dict(config))
    if diffs:
      raise errors.ConfigError(
          f"the checkpoint in {directory} (step {step}) holds another model: " + "; ".join(diffs)
          + ". Use the config it was trained with")
  saved_config = ml_collections.ConfigDict(saved)
  generator, critic = models.build_generator(saved_config), models.build_critic(saved_config)
  meta = ckpt.read_json(step, "meta")
  abstract = abstract_gan_state(generator, critic, saved_config)
  if with_critic:
    restored = restore_gan_state(ckpt, step, abstract)
    ema, d_params = restored.ema_params, restored.d_params
  else:
    ema, d_params = ckpt.restore(step, {"ema": abstract.ema_params})["ema"], None
  ckpt.close()
  return LoadedGAN(saved_config, generator, critic, ema, d_params, int(meta["stage"]),
                   float(meta["alpha"]), step)


def load_encoder(config, workdir: str):
  """Restores the GAN and the latest encoder of ``workdir``: returns (setup, encoder params)."""
  gan = load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  ckpt = encoder_checkpointer(workdir)
  step = ckpt.latest_step()
  if step is None:
    raise errors.ConfigError(
        f"no encoder checkpoint in {ckpt.directory}; train one with --mode=train_encoder")
  saved = ckpt.read_json(step, "config").get("encoder", {})
  diffs = [f"encoder.{k}: checkpoint {saved.get(k, False)!r} vs config {config.encoder[k]!r}"
           for k in ENCODER_SHAPE_FIELDS if saved.get(k, False) != config.encoder[k]]
  if diffs:
    ckpt.close()
    raise errors.ConfigError(
        f"the encoder checkpoint in {ckpt.directory} holds another encoder: " + "; ".join(diffs)
        + ". Use the settings it was trained with")
  abstract = checkpointing.abstract_like(setup.init_state())
  restored = ckpt.restore(step, {"state": abstract})["state"]
  ckpt.close()
  return setup, restored.params


def load_segmenter(workdir: str):
  """The selected (``best``) parameters of the distilled segmenter in ``workdir``, without the
  GAN: returns ``(model, params, meta)``; ``meta['resolution']`` is its input size."""
  ckpt = segmenter_checkpointer(workdir)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    raise errors.ConfigError(
        f"no distilled segmenter checkpoint in {ckpt.directory}; train one with "
        "--mode=train_segmenter (or choose --config.segment.route=encoder)")
  saved = ckpt.read_json(step, "config")
  meta = ckpt.read_json(step, "meta")
  model = models.build_unet(ml_collections.ConfigDict(saved["segmenter"]))
  abstract = _replicated_shapes(lambda k: models.init_unet(model, meta["resolution"], k))
  params = ckpt.restore(step, {"best": abstract})["best"]
  ckpt.close()
  return model, params, meta
