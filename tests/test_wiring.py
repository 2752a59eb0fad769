"""Every config field that changes the computation reaches the code that uses it.

Checked at the boundary, on what the step, the loss, the optimizer or the data pipeline
actually receives (spies around the functions the compiled steps call, while the step is
traced; spies around the factories the trainers call), with values for which the field's
effect cannot vanish (an eta above any mask's coverage, per-stage learning rates that differ
from the base rate). The inventory test derives the list of fields from configs/default.py: a
new field needs a wiring test (here or named in ``WIRED``) or a reason in ``NOT_COMPUTATION``.
"""

import ast
import collections
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default, tiny
from layered_gan_jax import seeds
from layered_gan_jax.data import train_input
from layered_gan_jax.nets import build, compositing, recompose, unet
from layered_gan_jax.nets import encoder as encoder_lib
from layered_gan_jax.training import (
  encoder_setup,
  gan_steps,
  loading,
  losses,
  optim,
  states,
  train_encoder,
  train_gan,
  train_segmenter,
)

TESTS = os.path.dirname(os.path.abspath(__file__))

# Fields whose wiring a test of another file checks through the config (file::test).
WIRED = {
  "data.name": "test_data.py::test_folder_train_mixed_formats_matches_manual",
  "data.path": "test_data.py::test_folder_train_mixed_formats_matches_manual",
  "data.num_train_examples": "test_data.py::test_epochs_are_permutations_and_reshuffled",
  "data.random_crop": "test_data.py::test_no_random_crop_is_plain_resize",
  "data.cub_test_ids_path": "test_data.py::test_tfds_cub_redo_test_ids",
  "data.cub_images_txt_path": "test_data.py::test_tfds_cub_redo_test_ids",
  "data.on_bad_file": "test_data.py::test_bad_files_error_policy",
  "data.sources": "test_data_mixture.py::test_each_image_is_what_its_source_yields",
  "data.synthetic_layout.margin": (
    "test_synthetic.py::test_a_layout_variant_from_the_data_config_reaches_training_and_evaluation"
  ),
  "data.synthetic_layout.rim_probability": (
    "test_synthetic.py::test_a_layout_variant_from_the_data_config_reaches_training_and_evaluation"
  ),
  "data.synthetic_layout.bg_textures": (
    "test_synthetic.py::test_a_layout_variant_from_the_data_config_reaches_training_and_evaluation"
  ),
  "train.ema_rampup": "test_train_step.py::test_ema_and_its_rampup_against_numpy",
  "segmenter.recompose": "test_recompose.py::test_recompose_off_gives_the_generators_own_pairs",
  "segment.route": "test_segmentation.py::test_segment_round_trip_per_route",
  "segment.mirror_average": "test_segmentation.py::test_mirror_average_is_the_mean_of_both_views",
  "eval.external_segmenter": "test_segmentation.py::test_external_segmenter_protocol_with_stand_ins",
  "eval.fid_samples": "test_fid.py::test_fid_in_training_and_fid_mode_on_a_checkpoint",
  "eval.fid_real_images": "test_fid.py::test_fid_in_training_and_fid_mode_on_a_checkpoint",
  "train.fid_every_images": "test_fid.py::test_fid_in_training_and_fid_mode_on_a_checkpoint",
  "train.fid_samples": "test_fid.py::test_fid_in_training_and_fid_mode_on_a_checkpoint",
  "train.collapse_patience": "test_collapse.py::test_stop_on_collapse_checkpoints_then_stops",
  "train.stop_on_collapse": "test_collapse.py::test_stop_on_collapse_checkpoints_then_stops",
}
_HERE = {
  "test_gan_step_receives_the_loss_perturbation_and_optimizer_fields": (
    "loss.min_mask_coverage loss.max_mask_coverage loss.mask_size_weight "
    "loss.binarization_weight loss.gp_weight loss.drift_weight perturb.shift "
    "perturb.bg_contrast_jitter train.adam_b1 train.adam_b2 train.adam_eps "
    "train.mapping_lr_mult train.critic_lr_mult train.ema_decay train.style_mixing_prob "
    "train.remat_penalty"
  ),
  "test_loop_gives_each_iteration_its_stage_batch_alpha_and_learning_rate": (
    "train.batch_sizes train.batch_size train.lrs train.lr train.phase_images "
    "train.max_steps train.steps_per_call train.start_resolution train.resolution"
  ),
  "test_loop_seeds_the_data_and_the_parameters_from_the_config": "seed",
  "test_model_fields_reach_the_networks": (
    "model.channels model.variant model.style_dim model.mapping_layers "
    "model.fused_resolution model.mask_logit_offset model.head_init_std model.dtype "
    "model.resampling"
  ),
  "test_encoder_step_receives_the_encoder_fields": (
    "encoder.target encoder.noise encoder.width encoder.max_width encoder.blocks_per_stage "
    "encoder.feature_weight encoder.latent_weight encoder.predict_placement "
    "encoder.refine_steps encoder.refine_lr encoder.lr"
  ),
  "test_encoder_trainer_reads_its_batch_size_and_steps": "encoder.batch_size encoder.max_steps",
  "test_segmenter_step_receives_the_segmenter_fields": (
    "segmenter.width segmenter.levels segmenter.lr segmenter.max_steps segmenter.dice_weight "
    "segmenter.scale_range segmenter.translate segmenter.max_cut segmenter.flip_prob "
    "segmenter.color_jitter segmenter.min_area segmenter.max_area segmenter.max_uncertainty"
  ),
  "test_swap_background_prob_reaches_the_recomposed_images": "segmenter.swap_background_prob",
  "test_segmenter_trainer_reads_its_batch_steps_and_validation_size": (
    "segmenter.batch_size segmenter.validation_size"
  ),
  "test_org_to_crop_sets_the_resize_before_the_crop": "data.org_to_crop",
  "test_synthetic_seed_and_category_reach_the_rendered_images": (
    "data.synthetic_seed data.synthetic_category"
  ),
  "test_tfds_split_data_dir_and_download_reach_tfds": (
    "data.train_split data.data_dir data.download"
  ),
  "test_pet_boundary_is_foreground_reaches_the_trimap_conversion": "data.pet_boundary_is_foreground",
  "test_on_missing_mask_reaches_the_pairing_of_images_and_masks": "data.on_missing_mask",
}
WIRED.update(
  {field: f"test_wiring.py::{test}" for test, fields in _HERE.items() for field in fields.split()}
)

# Fields that change no number of training, the encoder, the segmenter or the data: where
# things are written, how often, how fast, and what evaluation reports.
NOT_COMPUTATION = {
  "data.num_workers": "decoding threads; batches are identical for any count (test_data)",
  "data.prefetch": "batches prepared ahead; values unchanged",
  "train.device_prefetch": "batches put on the devices ahead; values unchanged",
  "train.log_every_steps": "logging period",
  "train.sample_every_steps": "sample-grid period",
  "train.checkpoint_every_steps": "checkpoint period (resume is exact: test_train)",
  "train.keep_checkpoints": "checkpoints kept on disk",
  "train.num_samples": "latents in the sample grids",
  "encoder.log_every_steps": "logging period",
  "encoder.checkpoint_every_steps": "checkpoint period",
  "segmenter.log_every_steps": "logging period",
  "segmenter.checkpoint_every_steps": "checkpoint and validation period",
  "eval.data.name": "what evaluation reads (evaluation, not training)",
  "eval.data.path": "what evaluation reads",
  "eval.data.sources": "what evaluation reads",
  "eval.max_examples": "how many images evaluation reads",
  "eval.batch_size": "evaluation batch; scores unchanged",
  "eval.baselines": "which baselines evaluation reports",
  "eval.num_generated": "generated images for evaluation's mask statistics",
  "eval.fid_weights": "where the Inception weights are read from",
  "runtime.xla_cpu_kernels": "which XLA:CPU kernels run the same program",
  "runtime.lease_stale_after_s": "run-folder lease timing",
}


def _fields(node, prefix=""):
  for k, v in node.items():
    if hasattr(v, "items"):
      yield from _fields(v, f"{prefix}{k}.")
    else:
      yield prefix + k


class Spy:
  """Records the arguments of module-level functions while they run (monkeypatched)."""

  def __init__(self, monkeypatch):
    self.calls = collections.defaultdict(list)
    self._mp = monkeypatch

  def on(self, module, name, replace=None):
    real = getattr(module, name)

    def spy(*args, **kwargs):
      self.calls[name].append((args, kwargs))
      return (replace or real)(*args, **kwargs)

    self._mp.setattr(module, name, spy)

  def kw(self, name, key, call=0):
    return self.calls[name][call][1][key]


def _leaves(tree):
  return sorted({float(x) for x in jax.tree.leaves(tree)})


# ---------------------------------------------------------------------------------- the GAN


def _gan_config():
  c = tiny.get_config()
  c.loss.min_mask_coverage = 0.61  # Above any mask's coverage at init: the size loss is on.
  c.loss.max_mask_coverage = 0.93
  c.loss.mask_size_weight = 2.5
  c.loss.binarization_weight = 3.5
  c.loss.gp_weight = 7.0
  c.loss.drift_weight = 0.004
  c.perturb.shift = 0.19
  c.perturb.bg_contrast_jitter = 0.45
  c.train.adam_b1 = 0.1
  c.train.adam_b2 = 0.95
  c.train.adam_eps = 1e-6
  c.train.mapping_lr_mult = 0.03
  c.train.critic_lr_mult = 1.7
  c.train.ema_decay = 0.98
  c.train.ema_rampup = False  # The ramp-up's own test: test_train_step.py.
  c.train.style_mixing_prob = 0.35
  c.train.remat_penalty = True
  return c


def test_gan_step_receives_the_loss_perturbation_and_optimizer_fields(monkeypatch):
  c = _gan_config()
  spy = Spy(monkeypatch)
  for module, name in (
    (losses, "critic_loss"),
    (losses, "generator_loss"),
    (compositing, "sample_perturbation"),
    (compositing, "apply_perturbation"),
    (optim, "per_parameter_adam"),
    (optim, "apply_updates"),
    (optim, "ema_update"),
    (gan_steps, "draw_mixing"),
  ):
    spy.on(module, name)
  generator, critic = build.build_generator(c), build.build_critic(c)
  state = jax.eval_shape(states.gan_init_fn(generator, critic, c), jax.random.PRNGKey(0))
  step = gan_steps.make_train_step(generator, critic, c, 2)
  real = jax.ShapeDtypeStruct((8, 16, 16, 3), jnp.float32)
  jax.eval_shape(step, state, real, jnp.float32(0.5), jnp.float32(1e-3))

  assert spy.kw("critic_loss", "gp_weight") == 7.0
  assert spy.kw("critic_loss", "drift_weight") == 0.004
  assert spy.kw("critic_loss", "remat_penalty") is True
  assert spy.kw("generator_loss", "eta") == 0.61
  assert spy.kw("generator_loss", "eta_max") == 0.93
  assert spy.kw("generator_loss", "size_weight") == 2.5
  assert spy.kw("generator_loss", "binary_weight") == 3.5
  for name in ("sample_perturbation", "apply_perturbation"):
    assert len(spy.calls[name]) == 2  # The critic step's generator pass and the generator's.
    for call in range(2):
      assert spy.kw(name, "shift_fraction", call) == 0.19
      assert spy.kw(name, "bg_contrast_jitter", call) == 0.45
  assert spy.calls["per_parameter_adam"][0][0] == (0.1, 0.95, 1e-6)
  critic_mult, generator_mult = (args[3] for args, _ in spy.calls["apply_updates"])
  assert _leaves(critic_mult) == [1.7]
  assert _leaves(generator_mult) == [0.03, 1.0]
  assert spy.calls["ema_update"][0][0][2] == 0.98
  assert spy.calls["draw_mixing"][0][0][1] == 0.35


def _loop_config():
  c = tiny.get_config()
  c.seed = 5
  c.train.start_resolution, c.train.resolution = 8, 16  # Two stages: 8 px, then 16 px.
  c.train.batch_sizes = "8:4"  # 16 px takes train.batch_size (8).
  c.train.lrs = "8:0.003"  # 16 px takes train.lr.
  c.train.lr = 0.0007
  c.train.phase_images = 16
  c.train.max_steps = 12
  c.train.steps_per_call = 2
  c.train.log_every_steps = 4
  c.train.sample_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  return c


def _expected_iterations(c):
  """(batch, resolution, alpha, lr) of each iteration, from the schedule's definition: 2 x
  phase_images per resolution, the first without fade-in, then alpha = (images done + 1) /
  phase_images up to 1; the last resolution until max_steps."""
  out = []
  first = -(-2 * c.train.phase_images // 4)  # 8 px at batch 4: 8 iterations.
  for i in range(c.train.max_steps):
    if i < first:
      out.append((4, 8, 1.0, 0.003))
    else:
      done = (i - first) * 8
      out.append((8, 16, min(1.0, (done + 1) / c.train.phase_images), 0.0007))
  return out


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
  """The GAN trainer with its compiled step replaced by a recorder (the loop, the schedule,
  the data and the checkpoints are real); returns what each call received, the workdir."""
  mp = pytest.MonkeyPatch()
  calls, iterators, inits = [], [], []

  def fake_compile(generator, critic, config, stage, state, real_shape, count=1):
    def step(state, reals, alphas, lr):
      reals = reals if count > 1 else (reals,)
      alphas = np.atleast_1d(np.asarray(alphas))
      calls.append((count, [r.shape for r in reals], [float(a) for a in alphas], float(lr)))
      metrics = dict.fromkeys(
        ("critic_loss", "wasserstein", "gradient_penalty", "generator_loss", "mask_coverage"),
        np.zeros(count, np.float32) if count > 1 else np.float32(0),
      )
      return state, metrics

    return step, 0.0, 0.0

  real_iterator, real_init = train_input.train_iterator, states.init_replicated

  def iterator(cfg, **kw):
    iterators.append((cfg, kw))
    return real_iterator(cfg, **kw)

  def init(fn, seed):
    inits.append(seed)
    return real_init(fn, seed)

  mp.setattr(gan_steps, "compile_train_step", fake_compile)
  mp.setattr(train_input, "train_iterator", iterator)
  mp.setattr(states, "init_replicated", init)
  c = _loop_config()
  workdir = str(tmp_path_factory.mktemp("wiring_loop"))
  try:
    train_gan.train_and_evaluate(c, workdir)
  finally:
    mp.undo()
  return dict(config=c, calls=calls, iterators=iterators, inits=inits, workdir=workdir)


def test_loop_gives_each_iteration_its_stage_batch_alpha_and_learning_rate(loop_run):
  c, calls = loop_run["config"], loop_run["calls"]
  got = [
    (shape[0], shape[1], alpha, lr)
    for _, shapes, alphas, lr in calls
    for shape, alpha in zip(shapes, alphas)
  ]
  want = _expected_iterations(c)
  assert [g[:2] for g in got] == [w[:2] for w in want]  # Batch and resolution per iteration.
  np.testing.assert_allclose([g[2:] for g in got], [w[2:] for w in want], rtol=1e-6)
  # train.steps_per_call: iterations run in compiled groups of two.
  assert {count for count, *_ in calls} == {2}


def test_loop_seeds_the_data_and_the_parameters_from_the_config(loop_run):
  c = loop_run["config"]
  assert loop_run["inits"][0] == c.seed + seeds.GAN_INIT
  got = [(cfg is c.data, kw["seed"], kw["batch_size"]) for cfg, kw in loop_run["iterators"]]
  stride = seeds.GAN_DATA_STAGE_STRIDE
  assert got == [(True, c.seed + stride * 1, 4), (True, c.seed + stride * 2, 8)]


def test_model_fields_reach_the_networks():
  c = tiny.get_config()
  c.model.channels = (16, 12, 8, 4)  # One more than 16 px needs: the builder truncates.
  c.model.variant = "shared_style"
  c.model.style_dim = 24
  c.model.mapping_layers = 3
  c.model.fused_resolution = 8
  c.model.mask_logit_offset = -1.5
  c.model.head_init_std = 0.5
  c.model.dtype = "bfloat16"
  c.model.resampling = "direct"
  g, d = build.build_generator(c), build.build_critic(c)
  assert (g.channels, d.channels) == ((16, 12, 8),) * 2
  assert (g.variant, g.style_dim, g.mapping_layers) == ("shared_style", 24, 3)
  assert (g.fused_resolution, d.fused_resolution) == (8, 8)
  assert (g.mask_logit_offset, g.head_init_std) == (-1.5, 0.5)
  assert g.dtype == d.dtype == jnp.bfloat16
  assert g.resampling == d.resampling == "direct"


# ------------------------------------------------------------------- encoder and segmenter


@pytest.fixture(scope="module")
def gan():
  c = tiny.get_config()
  generator, critic = build.build_generator(c), build.build_critic(c)
  state = train_gan.init_state(generator, critic, c)
  return loading.LoadedGAN(c, generator, critic, state.ema_params, state.d_params, 2, 1.0, 0)


def test_encoder_step_receives_the_encoder_fields(gan, monkeypatch):
  c = tiny.get_config()
  e = c.encoder
  e.target, e.noise, e.width, e.max_width, e.blocks_per_stage = "w", "zero", 6, 12, 2
  e.feature_weight, e.latent_weight, e.predict_placement = 0.7, 0.3, True
  e.refine_steps, e.refine_lr, e.lr = 3, 0.02, 3e-4
  spy = Spy(monkeypatch)
  spy.on(optax, "adam")
  spy.on(losses, "reconstruction_loss")
  spy.on(train_encoder, "latent_loss")
  spy.on(encoder_lib, "fixed_noise")
  spy.on(jax.lax, "fori_loop")
  setup = encoder_setup.EncoderSetup(c, gan)
  enc = setup.encoder
  assert (enc.target, enc.width, enc.max_width, enc.blocks_per_stage) == ("w", 6, 12, 2)
  assert enc.predict_placement is True
  assert spy.calls["adam"][0][0] == (3e-4,)
  state = jax.eval_shape(setup.init_fn(), jax.random.PRNGKey(0))
  images = jax.ShapeDtypeStruct((8, 16, 16, 3), jnp.float32)
  jax.eval_shape(train_encoder.make_encoder_step(setup), state, setup.frozen, images)
  assert spy.kw("reconstruction_loss", "feature_weight") == 0.7
  assert spy.calls["latent_loss"][0][0][2] == "w"  # Called only because latent_weight > 0.
  assert {args[0] for args, _ in spy.calls["fixed_noise"]} == {"zero"}
  jax.eval_shape(setup.predict_fn(), state.params, setup.frozen, images)
  assert spy.calls["adam"][-1][0] == (0.02,)
  assert spy.calls["fori_loop"][-1][0][:2] == (0, 3)


def test_encoder_trainer_reads_its_batch_size_and_steps(loop_run, monkeypatch):
  c = loop_run["config"]
  c = c.copy_and_resolve_references()
  c.encoder.batch_size, c.encoder.max_steps = 4, 9
  got = _stop_at_the_loop(monkeypatch, train_encoder, c, loop_run["workdir"])
  assert got["iterator"]["batch_size"] == 4 and got["loop"][3] == 9


def test_segmenter_step_receives_the_segmenter_fields(gan, monkeypatch):
  s = tiny.get_config().segmenter
  s.width, s.levels, s.batch_size, s.lr, s.max_steps, s.dice_weight = 5, 3, 4, 3e-3, 7, 0.3
  s.scale_range, s.translate, s.max_cut, s.flip_prob = (0.7, 1.3), False, 0.1, 0.2
  s.swap_background_prob, s.color_jitter = 0.6, 0.25
  s.min_area, s.max_area, s.max_uncertainty = 0.05, 0.8, 0.2
  spy = Spy(monkeypatch)
  spy.on(optax, "cosine_decay_schedule")
  for name in ("recompose", "mask_filter", "sample_placement", "color_jitter"):
    spy.on(recompose, name)
  spy.on(unet, "segmentation_loss")
  model, tx = build.build_unet(s), train_segmenter.make_optimizer(s)
  assert (model.width, model.levels) == (5, 3)
  sched = spy.calls["cosine_decay_schedule"][0]
  assert sched[0][:2] == (3e-3, 7)
  pair_fn = train_segmenter.make_pair_fn(gan, s, s.batch_size)
  step = train_segmenter.make_segmenter_step(model, tx, pair_fn, s)
  init = states.net_init_fn(lambda k: build.init_unet(model, 16, k), tx)
  state = jax.eval_shape(init, jax.random.PRNGKey(0))
  images, _ = jax.eval_shape(step, state, gan.ema_params)
  assert spy.calls["recompose"][0][0][2] is s
  assert spy.calls["mask_filter"][0][1] == dict(min_area=0.05, max_area=0.8, max_uncertainty=0.2)
  assert spy.calls["sample_placement"][0][1] == dict(
    scale_range=(0.7, 1.3), max_cut=0.1, flip_prob=0.2, translate=False
  )
  assert spy.calls["color_jitter"][0][0][2] == 0.25
  assert spy.calls["segmentation_loss"][0][0][2] == 0.3


def test_swap_background_prob_reaches_the_recomposed_images():
  """Empty masks: every recomposed image is a background, its own or the previous sample's."""
  s = tiny.get_config().segmenter
  s.color_jitter, s.translate = 0.0, False
  backgrounds = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (6, 8, 8, 3)), jnp.float32)
  layers = dict(
    background=backgrounds,
    foreground=jnp.ones_like(backgrounds),
    mask=jnp.zeros((6, 8, 8, 1)),
  )
  for prob, want in ((0.0, backgrounds), (1.0, jnp.roll(backgrounds, 1, axis=0))):
    s.swap_background_prob = prob
    images, _, _ = recompose.recompose(jax.random.PRNGKey(0), layers, s)
    np.testing.assert_allclose(images, want, atol=1e-6)


def test_segmenter_trainer_reads_its_batch_steps_and_validation_size(loop_run, monkeypatch):
  c = loop_run["config"].copy_and_resolve_references()
  s = c.segmenter
  s.batch_size, s.max_steps, s.validation_size = 4, 11, 6
  pairs, validations = [], []
  real_pairs, real_validation = train_segmenter.make_pair_fn, train_segmenter.ValidationSet

  def pair_fn(gan, s, batch):
    pairs.append(batch)
    return real_pairs(gan, s, batch)

  def validation(*args):
    validations.append(real_validation(*args))
    return validations[-1]

  monkeypatch.setattr(train_segmenter, "make_pair_fn", pair_fn)
  monkeypatch.setattr(train_segmenter, "ValidationSet", validation)
  got = _stop_at_the_loop(monkeypatch, train_segmenter, c, loop_run["workdir"])
  assert pairs == [4, 4] and got  # The training pairs' and the validation set's.
  assert got["loop"][3] == 11
  assert validations[0].images.shape == (6, 16, 16, 3) and len(validations[0].labels) == 6


class _Stop(Exception):
  pass


def _stop_at_the_loop(monkeypatch, trainer, config, workdir):
  """Runs ``trainer.train_and_evaluate`` up to its TrainLoop; returns the loop's arguments and
  the training iterator's (the iterator is not started)."""
  got = {}

  def loop(*args, **kwargs):
    got["loop"] = args
    raise _Stop()

  def iterator(cfg, **kw):
    got["iterator"] = kw
    return iter(())

  monkeypatch.setattr(trainer, "TrainLoop", loop)
  monkeypatch.setattr(trainer, "writer_lease", lambda *a: None)
  monkeypatch.setattr(train_input, "train_iterator", iterator)
  with pytest.raises(_Stop):
    trainer.train_and_evaluate(config, workdir)
  return got


# ------------------------------------------------------------------------------- the data


def _first_batch(**fields):
  """The first batch of a 16 px synthetic training iterator (no crop) and its image indices."""
  c = tiny.get_config().data
  c.num_train_examples, c.random_crop = 8, False
  for k, v in fields.items():
    c[k] = v
  it = train_input.train_iterator(c, resolution=16, batch_size=4, seed=0)
  indices = it.batch_indices(0)
  batch = next(it)["image"]
  it.close()
  return batch, indices


def test_org_to_crop_sets_the_resize_before_the_crop():
  from layered_gan_jax.data import synthetic, transforms

  c = tiny.get_config().data
  c.num_train_examples, c.org_to_crop = 8, 1.5
  it = train_input.train_iterator(c, resolution=16, batch_size=4, seed=0)
  idx, off = it.batch_indices(0), it.crop_offsets_of_batch(0)
  batch = next(it)["image"]
  it.close()
  assert off.max() <= 8 and off.max() > 2  # Offsets range over 24 - 16 = 8 pixels.
  for j, g in enumerate(idx):
    img, _ = synthetic.render_example("train", int(g), 16, seed=0)
    want = transforms.resize_square(np.asarray(img), 24)[
      off[j, 0] : off[j, 0] + 16, off[j, 1] : off[j, 1] + 16
    ]
    np.testing.assert_array_equal(batch[j], transforms.to_float(want))


def test_synthetic_seed_and_category_reach_the_rendered_images():
  from layered_gan_jax.data import synthetic, transforms

  for fields, seed, layout in (
    (dict(synthetic_seed=3), 3, synthetic.LAYOUT),
    (dict(synthetic_category="round"), 0, synthetic.CATEGORIES["round"]),
    (dict(synthetic_category="angular"), 0, synthetic.CATEGORIES["angular"]),
  ):
    batch, indices = _first_batch(**fields)
    for j, g in enumerate(indices):
      img, _ = synthetic.render_example("train", int(g), 16, seed=seed, layout=layout)
      np.testing.assert_array_equal(batch[j], transforms.to_float(np.asarray(img)), str(fields))


def test_tfds_split_data_dir_and_download_reach_tfds(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=12):
    spy = Spy(monkeypatch)
    spy.on(tfds, "load")
    c = tiny.get_config().data
    c.name, c.num_train_examples, c.train_split = "lsun/car", 8, "validation"
    c.data_dir, c.download = str(tmp_path), True
    it = train_input.train_iterator(c, resolution=16, batch_size=4, seed=0)
    next(it)
    it.close()
  train_input.clear_caches()
  args, kw = spy.calls["load"][0]
  assert (kw["split"], kw["data_dir"], kw["download"]) == ("validation", str(tmp_path), True)


def test_pet_boundary_is_foreground_reaches_the_trimap_conversion(monkeypatch):
  """The pets' trimap (1 pet, 2 background, 3 boundary) as the evaluation pipeline converts it,
  with the config it hands the conversion."""
  import tensorflow_datasets as tfds

  from layered_gan_jax.data import eval_input, tfds_sources

  spy = Spy(monkeypatch)
  spy.on(tfds_sources, "_tfds_mask_to_float")
  trimap, got = np.array([[1, 2, 3]], np.uint8), []
  with tfds.testing.mock_data(num_examples=12):
    for flag in (False, True):
      c = tiny.get_config().data
      c.name, c.pet_boundary_is_foreground = "oxford_iiit_pet", flag
      ev = eval_input.eval_dataset(c, resolution=8, batch_size=4)
      next(ev)
      ev.close()
      handed = spy.calls["_tfds_mask_to_float"][-1][0][0]
      got.append(tfds_sources._tfds_mask_to_float(handed, trimap).tolist())
  train_input.clear_caches()
  assert got == [[[1.0, 0.0, 0.0]], [[1.0, 0.0, 1.0]]]


def test_on_missing_mask_reaches_the_pairing_of_images_and_masks(monkeypatch, tmp_path):
  from PIL import Image

  from layered_gan_jax.data import eval_input, image_io

  for folder in ("images", "masks"):
    (tmp_path / folder).mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / folder / "a.png")
  spy = Spy(monkeypatch)
  spy.on(image_io, "pair_images_and_masks")
  c = tiny.get_config().data
  c.name, c.path, c.on_missing_mask = "folder", str(tmp_path), "skip"
  eval_input.eval_dataset(c, resolution=8, batch_size=1).close()
  assert spy.kw("pair_images_and_masks", "on_missing_mask") == "skip"


# ------------------------------------------------------------------------------- inventory


def test_every_field_has_a_wiring_test_or_a_reason():
  """Each field of configs/default.py is wired (a named test that exists and sets it, directly
  or through a helper of its file) or listed with its reason; nothing listed is stale."""
  fields = set(_fields(default.get_config()))
  missing = sorted(fields - set(WIRED) - set(NOT_COMPUTATION))
  assert not missing, f"config fields with no wiring test and no reason: {missing}"
  stale = sorted((set(WIRED) | set(NOT_COMPUTATION)) - fields)
  assert not stale, f"listed fields that the config no longer has: {stale}"
  assert not set(WIRED) & set(NOT_COMPUTATION)
  files, reached = {}, {}
  for field, where in WIRED.items():
    path, test = where.split("::")
    if path not in files:
      with open(os.path.join(TESTS, path)) as f:
        source = f.read()
      files[path] = {
        n.name: ast.get_source_segment(source, n)
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef)
      }
    assert test in files[path], f"{field}: {where} does not exist"
    if where not in reached:
      reached[where] = _reach(files[path], test)
    assert field.rsplit(".", 1)[-1] in reached[where], f"{field}: {where} does not set it"


def _reach(functions, name):
  """The source of ``name`` and of every function of its file it names, transitively (its
  helpers and fixtures)."""
  seen, todo = set(), [name]
  while todo:
    current = todo.pop()
    seen.add(current)
    todo += [
      n
      for n in functions
      if n not in seen and n not in todo and re.search(rf"\b{n}\b", functions[current])
    ]
  return "".join(functions[n] for n in seen)
