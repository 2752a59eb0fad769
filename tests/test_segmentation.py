"""Encoders, the distilled segmenter, evaluation and inference on a tiny GAN trained in the
test."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from layered_gan_jax import errors, parallel
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.evaluation import evaluate, inference
from layered_gan_jax.nets import build, unet
from layered_gan_jax.run import layout
from layered_gan_jax.training import (
  loading,
  loop,
  preemption,
  train_encoder,
  train_gan,
  train_segmenter,
)
from layered_gan_jax.training.encoder_setup import EncoderSetup


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny GAN (8 -> 16 px, 6 iterations), its encoder and its distilled segmenter (4
  iterations each)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny.get_config()
  config.train.max_steps = 6
  train_gan.train_and_evaluate(config, workdir)
  train_encoder.train_and_evaluate(config, workdir)
  train_segmenter.train_and_evaluate(config, workdir)
  return config, workdir


@pytest.fixture(scope="module")
def gan_workdir(trained):
  return trained[1]


def test_encoder_training_lowers_the_reconstruction_loss(trained):
  config, workdir = trained
  config = tiny.get_config()
  config.encoder.lr = 3e-3
  gan = loading.load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  step = jax.jit(train_encoder.make_encoder_step(setup))
  state = setup.init_state()
  rng = np.random.default_rng(0)
  images = parallel.put_batch(rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32))
  losses = []
  for _ in range(25):
    state, metrics = step(state, setup.frozen, images)
    losses.append(float(metrics["encoder_loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("target", ["z", "z_per_generator", "w", "w_plus"])
def test_every_encoder_target_reconstructs(trained, target):
  config, workdir = trained
  config = tiny.get_config()
  config.encoder.target = target
  config.encoder.latent_weight = 0.5
  config.encoder.lr = 3e-3
  gan = loading.load_gan(workdir, config, with_critic=True)
  setup = EncoderSetup(config, gan)
  state = setup.init_state()
  rng = np.random.default_rng(1)
  host = rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
  images = parallel.put_batch(host)
  step, predict = jax.jit(train_encoder.make_encoder_step(setup)), setup.predict_fn()

  def recon_error(params):  # Mean |G(E(x)) - x|, from the prediction alone.
    layers, recon = predict(params, setup.frozen, images)
    assert recon.shape == (8, 16, 16, 3) and layers["mask"].shape == (8, 16, 16, 1)
    return float(np.mean(np.abs(np.asarray(recon) - host)))

  before = recon_error(state.params)
  for _ in range(15):
    state, metrics = step(state, setup.frozen, images)
    assert np.isfinite(float(metrics["encoder_loss"])) and "latent_loss" in metrics
  after = recon_error(state.params)
  # Measured: from 1.06-1.93 to 0.64-0.80 (ratios 0.39-0.66); with lr=0 it stays put.
  assert after < 0.8 * before, (before, after)


def test_external_segmenter_protocol_with_stand_ins(trained):
  config, workdir = trained
  gan = loading.load_gan(workdir, config)
  everything = lambda images: [np.ones(im.shape[:2], bool) for im in images]
  stats = evaluate.generated_mask_statistics(gan, 20, seed=0, batch=8, segmenter=everything)
  assert stats["detected_fraction"] == 1.0 and stats["detected"] == 20
  # IoU of a mask with the full frame is its coverage.
  np.testing.assert_allclose(stats["reference_fg_iou"], stats["binarized_coverage_mean"], rtol=1e-6)
  nothing = lambda images: [None] * len(images)
  stats = evaluate.generated_mask_statistics(gan, 20, seed=0, batch=8, segmenter=nothing)
  assert stats["detected_fraction"] == 0.0
  # Inverted-mask agreement: two-class mIoU(not m, r) == mIoU(m, not r), so it equals the plain
  # agreement with an inverted segmenter.
  r = gan.resolution
  yy, xx = np.mgrid[:r, :r]
  disc = (yy - r / 2) ** 2 + (xx - r / 2) ** 2 < (r / 3) ** 2
  stats = evaluate.generated_mask_statistics(
    gan, 20, seed=0, batch=8, segmenter=lambda images: [disc] * len(images)
  )
  flipped = evaluate.generated_mask_statistics(
    gan, 20, seed=0, batch=8, segmenter=lambda images: [~disc] * len(images)
  )
  np.testing.assert_allclose(
    stats["reference_miou_inverted_mask"], flipped["reference_miou"], rtol=1e-6
  )
  np.testing.assert_allclose(
    flipped["reference_miou_inverted_mask"], stats["reference_miou"], rtol=1e-6
  )


def test_sample_round_trip(trained, tmp_path):
  config, workdir = trained
  out = tmp_path / "samples"
  written = inference.sample(config, workdir, str(out), num_samples=5, truncation=0.7, seed=3)
  assert len(written) == 5 * 4
  for layer in inference.LAYERS:
    files = sorted(os.listdir(out / layer))
    assert files == [f"{i:05d}.png" for i in range(5)]
    assert Image.open(out / layer / files[0]).size == (16, 16)
  assert (out / "grid.png").exists()
  again = tmp_path / "again"
  inference.sample(config, workdir, str(again), num_samples=5, truncation=0.7, seed=3)
  for layer in inference.LAYERS:  # Same seed, same samples.
    np.testing.assert_array_equal(
      np.asarray(Image.open(out / layer / "00002.png")),
      np.asarray(Image.open(again / layer / "00002.png")),
    )


def test_segment_round_trip_skips_unreadable_files(trained, tmp_path):
  config, workdir = trained
  src = tmp_path / "in"
  (src / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(src / "a.png")
  Image.fromarray(rng.integers(0, 255, (20, 50), dtype=np.uint8)).save(src / "sub" / "b.jpg")
  (src / "broken.png").write_bytes(b"not an image")
  before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
  out = tmp_path / "out"
  report = inference.segment(config, workdir, str(src), str(out))
  assert report["segmented"] == 2
  assert [os.path.basename(f["file"]) for f in report["failed"]] == ["broken.png"]
  assert Image.open(out / "a_mask.png").size == (30, 40)
  assert Image.open(out / "sub" / "b_mask.png").size == (50, 20)
  assert set(np.unique(np.asarray(Image.open(out / "a_mask.png")))) <= {0, 255}
  assert (out / "a_overlay.png").exists() and (out / "segment_report.json").exists()
  assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before
  with pytest.raises(ConfigError, match="inside the input folder"):
    inference.segment(config, workdir, str(src), str(src / "masks"))


def test_clear_errors_without_a_checkpoint_or_with_another_model(trained, tmp_path):
  config, workdir = trained
  with pytest.raises(ConfigError, match="no GAN checkpoint"):
    inference.sample(config, str(tmp_path), str(tmp_path / "o"))
  other = tiny.get_config()
  other.model.channels = (32, 32, 32)
  with pytest.raises(ConfigError, match="another model.*model.channels"):
    inference.sample(other, workdir, str(tmp_path / "o"))
  with pytest.raises(ConfigError, match="no encoder checkpoint"):
    gan_only = _copy_gan(workdir, tmp_path / "gan_only")
    loading.load_encoder(config, gan_only, loading.load_gan(gan_only, config, with_critic=True))


@pytest.mark.slow
def test_encoder_choices_benchmark_smoke(trained, tmp_path):
  """benchmarks/encoder_choices.py on the tiny GAN: every variant is trained from scratch
  against the same frozen GAN (whose checkpoints it must not touch) and evaluated."""
  from benchmarks import encoder_choices  # pylint: disable=g-import-not-at-top

  _, workdir = trained
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  out = tmp_path / "choices.json"
  encoder_choices.main(
    [
      f"--gan_workdir={workdir}",
      "--config="
      + os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny.py"
      ),
      "--variants=w_plus,z_per_generator",
      "--steps=3",
      f"--workdir_root={tmp_path / 'runs'}",
      f"--json={out}",
    ]
  )
  result = json.loads(out.read_text())
  assert set(result["variants"]) == {"w_plus", "z_per_generator"}
  for name, r in result["variants"].items():
    assert r["encoder_steps"] == 3
    assert 0.0 <= r["fg_iou"] <= 1.0 and 0.0 <= r["miou"] <= 1.0
    assert r["final_train"]["l1"] > 0.0
    assert r["overrides"] == encoder_choices.VARIANTS[name]
  assert result["best_by_fg_iou"] in result["variants"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
  with pytest.raises(SystemExit, match="unknown variant"):
    encoder_choices.main([f"--gan_workdir={workdir}", "--variants=resnet", f"--json={out}"])


@pytest.mark.slow
def test_segmenter_choices_benchmark_smoke(trained, tmp_path):
  """benchmarks/segmenter_choices.py on the tiny GAN: a trained choice and one that reuses its
  network (only the prediction differs); the GAN's checkpoints are not touched; a choice listed
  before the one it reuses is an error before anything runs."""
  from benchmarks import segmenter_choices  # pylint: disable=g-import-not-at-top

  _, workdir = trained
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  out = tmp_path / "choices.json"
  tiny_path = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "tiny.py"
  )
  common = [
    f"--gan_workdir={workdir}",
    f"--config={tiny_path}",
    f"--workdir_root={tmp_path / 'runs'}",
    f"--json={out}",
  ]
  segmenter_choices.main(common + ["--choices=default,no_mirror_average"])
  result = json.loads(out.read_text())
  assert list(result["choices"]) == ["default", "no_mirror_average"]
  for name, r in result["choices"].items():
    assert r["route"] == "distilled" and 0.0 <= r["fg_iou"] <= 1.0
    assert r["overrides"] == segmenter_choices.CHOICES[name][1]
    assert set(r["baselines"]) == {"full_image", "center_prior", "grabcut"}
  assert result["choices"]["no_mirror_average"]["reuses"] == "default"
  assert os.path.islink(tmp_path / "runs" / "no_mirror_average" / layout.SEGMENTER_DIR)
  assert (
    "| no_mirror_average | distilled | `segment.mirror_average=False` |"
    in (tmp_path / "choices.md").read_text()
  )
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
  with pytest.raises(SystemExit, match="list 'default' before it"):
    segmenter_choices.main(common + ["--choices=no_mirror_average,default"])


def test_encoder_resume_equals_uninterrupted(trained, tmp_path):
  """2 encoder steps, a restart, 2 more: bit for bit the state of 4 uninterrupted steps."""
  _, workdir = trained
  finals = {}
  for name, schedule in (("straight", (4,)), ("restarted", (2, 4))):
    run = tmp_path / name
    shutil.copytree(os.path.join(workdir, layout.GAN_DIR), run / layout.GAN_DIR)
    for max_steps in schedule:
      config = tiny.get_config()
      config.encoder.max_steps = max_steps
      config.encoder.checkpoint_every_steps = 2
      state = train_encoder.train_and_evaluate(config, str(run))
    finals[name] = jax.device_get(state)
  assert int(finals["restarted"].step) == 4
  for a, b in zip(jax.tree.leaves(finals["straight"]), jax.tree.leaves(finals["restarted"])):
    np.testing.assert_array_equal(a, b)


def test_placement_head_starts_at_the_identity_and_learns(trained):
  """With the placement head (zero-initialised) the first reconstruction equals the plain
  one, and the head's parameters get a gradient."""
  from layered_gan_jax.nets import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import losses  # pylint: disable=g-import-not-at-top

  _, workdir = trained
  plain_cfg, placed_cfg = tiny.get_config(), tiny.get_config()
  placed_cfg.encoder.predict_placement = True
  gan = loading.load_gan(workdir, plain_cfg, with_critic=True)
  plain, placed = (EncoderSetup(c, gan) for c in (plain_cfg, placed_cfg))
  s_plain, s_placed = plain.init_state(), placed.init_state()
  assert encoder_lib.PLACEMENT in s_placed.params
  images = parallel.put_batch(
    np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
  )
  # Same trunk and style heads: copy the plain encoder's parameters into the placed one.
  params = dict(s_plain.params, **{encoder_lib.PLACEMENT: s_placed.params[encoder_lib.PLACEMENT]})
  (la, ra), (lb, rb) = (
    jax.device_get(jax.jit(plain.reconstruct)(s_plain.params, plain.frozen, images)),
    jax.device_get(jax.jit(placed.reconstruct)(params, placed.frozen, images)),
  )
  np.testing.assert_allclose(rb, ra, atol=1e-6)
  np.testing.assert_allclose(lb["mask"], la["mask"], atol=1e-6)

  def loss(p):
    _, recon = placed.reconstruct(p, placed.frozen, images)
    return losses.reconstruction_loss(
      recon,
      images,
      placed.features(placed.frozen["d"], recon),
      placed.features(placed.frozen["d"], images),
    )[0]

  grads = jax.jit(jax.grad(loss))(params)[encoder_lib.PLACEMENT]
  assert float(np.abs(np.asarray(grads["kernel"])).max()) > 0
  # A known raw output moves the mask by a known amount: dy = dx = 0.25 of the frame.
  layers = {k: jax.numpy.asarray(v) for k, v in la.items()}
  raw = np.tile(np.array([[np.arctanh(0.5), np.arctanh(0.5), 0.0]], np.float32), (8, 1))
  moved = np.asarray(encoder_lib.place_foreground(layers, jax.numpy.asarray(raw))["mask"])
  np.testing.assert_allclose(moved[:, 4:, 4:], np.asarray(la["mask"])[:, :12, :12], atol=1e-5)
  assert np.all(moved[:, :4] == 0) and np.all(moved[:, :, :4] == 0)


def test_refinement_lowers_the_reconstruction_loss(trained):
  from layered_gan_jax.training import losses  # pylint: disable=g-import-not-at-top

  _, workdir = trained
  config = tiny.get_config()
  setup, enc_params = loading.load_encoder(
    config, workdir, loading.load_gan(workdir, config, with_critic=True)
  )
  images = parallel.put_batch(
    np.random.default_rng(1).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
  )

  def loss_of(recon):
    return float(
      losses.reconstruction_loss(
        recon,
        images,
        setup.features(setup.frozen["d"], recon),
        setup.features(setup.frozen["d"], images),
      )[0]
    )

  before = loss_of(setup.predict_fn()(enc_params, setup.frozen, images)[1])
  config.encoder.refine_steps, config.encoder.refine_lr = 20, 0.05
  refined_setup = EncoderSetup(config, setup.gan)
  after = loss_of(refined_setup.predict_fn()(enc_params, refined_setup.frozen, images)[1])
  assert after < 0.95 * before, (before, after)


def test_encoder_checkpoint_with_other_shapes_is_a_clear_error(trained):
  _, workdir = trained
  config = tiny.get_config()
  config.encoder.predict_placement = True
  gan = loading.load_gan(workdir, config, with_critic=True)
  with pytest.raises(ConfigError, match="another encoder: encoder.predict_placement"):
    loading.load_encoder(config, workdir, gan)
  with pytest.raises(ConfigError, match="another encoder: encoder.predict_placement"):
    train_encoder.train_and_evaluate(config, workdir)  # Resuming it: refused the same way.


def _copy_gan(workdir, dst):
  """A new run folder holding only the GAN checkpoints of ``workdir``."""
  shutil.copytree(os.path.join(workdir, layout.GAN_DIR), os.path.join(dst, layout.GAN_DIR))
  return str(dst)


def test_segmenter_steps_lower_the_loss(gan_workdir):
  """On one fixed batch of recomposed pairs, 30 Adam steps of the real step function cut the
  loss by more than a quarter (measured 0.98 -> 0.56 with the tiny GAN)."""
  config = tiny.get_config()
  s = config.segmenter
  s.width, s.lr = 8, 1e-2
  gan = loading.load_gan(gan_workdir, config)
  model = build.build_unet(s)
  tx = train_segmenter.make_optimizer(s)
  pairs = train_segmenter.make_pair_fn(gan, s, s.batch_size)
  fixed = jax.jit(pairs)(gan.ema_params, jax.random.PRNGKey(0))
  step = jax.jit(train_segmenter.make_segmenter_step(model, tx, lambda g, k: fixed, s))
  params = build.init_unet(model, gan.resolution, jax.random.PRNGKey(1))
  state = train_segmenter.NetState(
    step=np.int32(0), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(2)
  )
  s.max_steps = 1000  # No decay within the 30 steps.
  losses = []
  for _ in range(30):
    state, metrics = step(state, gan.ema_params)
    losses.append(float(metrics["segmenter_loss"]))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < 0.75 * losses[0], losses
  assert 0.0 <= float(metrics["kept_fraction"]) <= 1.0


def test_weights_drop_filtered_images_from_the_loss():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 4)).astype(np.float32)
  labels = (rng.uniform(size=(3, 4, 4)) > 0.5).astype(np.float32)
  full, _ = unet.segmentation_loss(logits[:2], labels[:2], 0.5)
  weighted, _ = unet.segmentation_loss(logits, labels, 0.5, np.array([1.0, 1.0, 0.0]))
  np.testing.assert_allclose(float(weighted), float(full), rtol=1e-6)
  nothing, _ = unet.segmentation_loss(logits, labels, 0.5, np.zeros(3, np.float32))
  assert float(nothing) == 0.0


class _StopAfter(preemption.PreemptionGuard):
  """A SIGTERM that arrives after ``steps`` training steps (the loop asks once before every
  step)."""

  def __init__(self, ckpt, steps):
    self.left = steps
    super().__init__(ckpt)

  def stop_at(self, step):
    self.left -= 1
    self.requested = self.requested or self.left < 0
    return super().stop_at(step)


def test_resume_after_sigterm_equals_uninterrupted(gan_workdir, tmp_path, monkeypatch):
  """4 straight steps against 2 steps, a SIGTERM (checkpoint, Preempted) and a rerun: the same
  state and selected parameters, bit for bit."""
  config = tiny.get_config()
  config.segmenter.checkpoint_every_steps = 3
  finals = {}
  for name in ("straight", "restarted"):
    run = _copy_gan(gan_workdir, tmp_path / name)
    if name == "restarted":
      with monkeypatch.context() as m:
        m.setattr(loop, "PreemptionGuard", lambda ckpt: _StopAfter(ckpt, 2))
        with pytest.raises(errors.Preempted, match="stopped at step 2"):
          train_segmenter.train_and_evaluate(config, run)
      ckpt = loading.segmenter_checkpointer(run)
      assert ckpt.latest_step() == 2
      ckpt.close()
    state = train_segmenter.train_and_evaluate(config, run)
    _, best, meta = loading.load_segmenter(run)
    finals[name] = (meta["best_step"], jax.device_get(state), jax.device_get(best))
  assert finals["straight"][0] == finals["restarted"][0]
  for a, b in zip(
    jax.tree.leaves(finals["straight"][1:]), jax.tree.leaves(finals["restarted"][1:])
  ):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_with_a_clear_message(gan_workdir, tmp_path, monkeypatch):
  run = _copy_gan(gan_workdir, tmp_path / "nan")
  real = unet.segmentation_loss
  monkeypatch.setattr(
    unet, "segmentation_loss", lambda *a, **k: tuple(v * np.nan for v in real(*a, **k))
  )
  with pytest.raises(errors.NonFiniteLossError, match="non-finite segmenter loss at step 2"):
    train_segmenter.train_and_evaluate(tiny.get_config(), run)


def test_evaluate_scores_every_trained_route(gan_workdir):
  config = tiny.get_config()
  result = evaluate.evaluate(config, gan_workdir)
  with open(os.path.join(gan_workdir, "eval", "metrics.json")) as f:
    assert json.load(f) == json.loads(json.dumps(result))
  assert os.path.exists(os.path.join(gan_workdir, "eval", "panel.png"))
  assert result["num_images"] == config.eval.max_examples
  # Full-image mask: fg IoU = mean object area of the evaluated images.
  assert 0.08 <= result["baselines"]["full_image"]["fg_iou"] <= 0.4
  assert 0.0 <= result["generated"]["mask_coverage"] <= 1.0
  assert result["route"] == "distilled"
  assert set(result["routes"]) == {"distilled", "encoder"}
  for key in ("fg_iou", "miou", "pixel_accuracy", "max_fbeta"):
    assert result[key] == result["routes"]["distilled"][key]
    assert 0.0 <= result["routes"]["encoder"][key] <= 1.0
  assert set(result["baselines"]) == {"full_image", "center_prior", "grabcut"}
  # Each route's scores and the full-image baseline's, recomputed image by image in plain numpy
  # from the route's own prediction on the same evaluation images.
  split = evaluate.load_split(
    config.data, 16, config.eval.batch_size, config.eval.max_examples
  )  # tiny: the synthetic test split
  batches, gt = split.batches, split.gt
  gt = gt >= 0.5
  iou = lambda a, b: np.sum(a & b) / np.sum(a | b) if np.sum(a | b) else 1.0
  for name in ("distilled", "encoder"):
    route = inference.load_route(config, gan_workdir, name)
    pred = np.concatenate([np.asarray(route.predict(x))[valid] for x, valid in batches]) >= 0.5
    assert pred.shape == gt.shape and 0 < pred.mean() < 1  # Not a trivial mask.
    fg = [iou(p, g) for p, g in zip(pred, gt)]
    bg = [iou(~p, ~g) for p, g in zip(pred, gt)]
    scores = result["routes"][name]
    assert scores["fg_iou"] == pytest.approx(np.mean(fg), rel=1e-9), name
    assert scores["miou"] == pytest.approx(np.mean(fg) / 2 + np.mean(bg) / 2, rel=1e-9), name
    assert scores["pixel_accuracy"] == pytest.approx(np.mean(pred == gt), rel=1e-9), name
  assert result["baselines"]["full_image"]["fg_iou"] == pytest.approx(
    np.mean([g.mean() for g in gt]), rel=1e-9
  )
  config.segment.route = "encoder"
  as_encoder = evaluate.evaluate(config, gan_workdir)
  assert as_encoder["fg_iou"] == result["routes"]["encoder"]["fg_iou"]
  with open(os.path.join(gan_workdir, "eval", "metrics.json")) as f:
    assert json.load(f)["route"] == "encoder"
  # Two labelled sources (the synthetic categories' test splits): every figure per source too.
  config.eval.data.sources = (("synthetic", "round"), ("synthetic", "angular"))
  config.eval.max_examples = 4
  per = evaluate.evaluate(config, gan_workdir)
  assert per["num_images"] == 8 and per["dataset"] == ["round", "angular"]
  assert list(per["sources"]) == ["round", "angular"]
  for figures in per["sources"].values():
    assert figures["num_images"] == 4
    assert set(figures["routes"]) == {"distilled", "encoder"}
    assert set(figures["baselines"]) == set(per["baselines"])
  for key in ("fg_iou", "miou", "pixel_accuracy"):  # Image averages: the mean of the two.
    for route in ("distilled", "encoder"):
      np.testing.assert_allclose(
        np.mean([per["sources"][c]["routes"][route][key] for c in ("round", "angular")]),
        per["routes"][route][key],
        rtol=1e-6,
      )


@pytest.mark.parametrize("route", ["distilled", "encoder"])
def test_segment_round_trip_per_route(gan_workdir, tmp_path, route):
  config = tiny.get_config()
  config.segment.route = route
  src = tmp_path / "in"
  src.mkdir()
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
  Image.fromarray(image).save(src / "a.png")
  report = inference.segment(config, gan_workdir, str(src), str(tmp_path / "out"))
  assert report["route"] == route and report["segmented"] == 1
  mask = np.asarray(Image.open(tmp_path / "out" / "a_mask.png"))
  assert mask.shape == (40, 30) and set(np.unique(mask)) <= {0, 255}
  # The same prediction as the route itself on the resized image.
  r = inference.load_route(config, gan_workdir, route)
  from layered_gan_jax.data import transforms  # pylint: disable=g-import-not-at-top

  x = transforms.to_float(transforms.resize_square(image, r.resolution))[None]
  n = jax.device_count()
  soft = r.predict(np.repeat(x, n, axis=0))[0]
  full = (
    np.asarray(
      Image.fromarray(soft.astype(np.float32), mode="F").resize((30, 40), Image.Resampling.BILINEAR)
    )
    >= 0.5
  )
  np.testing.assert_array_equal(mask == 255, full)


def test_mirror_average_is_the_mean_of_both_views(gan_workdir):
  """``segment.mirror_average``: the distilled route's logits are the mean of the U-Net's
  logits of the image and the mirrored logits of the mirror image, so mirroring the input
  mirrors the mask; off, the route is the U-Net alone."""
  config = tiny.get_config()
  model, params, _ = loading.load_segmenter(gan_workdir)
  x = np.random.default_rng(1).uniform(-1, 1, (2 * jax.device_count(), 16, 16, 3))
  x = x.astype(np.float32)
  logits = lambda v: np.asarray(model.apply({"params": params}, v))
  sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
  on = inference.load_route(config, gan_workdir, "distilled")
  assert on.info["mirror_average"] is True
  expected = sigmoid(0.5 * (logits(x) + logits(x[:, :, ::-1])[:, :, ::-1]))
  np.testing.assert_allclose(on.predict(x), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    on.predict(x[:, :, ::-1]), on.predict(x)[:, :, ::-1], rtol=1e-5, atol=1e-6
  )
  config.segment.mirror_average = False
  off = inference.load_route(config, gan_workdir, "distilled")
  np.testing.assert_allclose(off.predict(x), sigmoid(logits(x)), rtol=1e-5, atol=1e-6)
  assert not np.allclose(off.predict(x), on.predict(x), rtol=1e-5, atol=1e-6)


def test_distilled_route_needs_no_gan(gan_workdir, tmp_path):
  """The distilled route restores only its own checkpoint (no GAN folder needed)."""
  dst = tmp_path / "segmenter_only"
  shutil.copytree(os.path.join(gan_workdir, layout.SEGMENTER_DIR), dst / layout.SEGMENTER_DIR)
  route = inference.load_route(tiny.get_config(), str(dst), "distilled")
  assert route.resolution == 16


def test_missing_route_checkpoints_are_clear_errors(gan_workdir, tmp_path):
  gan_only = _copy_gan(gan_workdir, tmp_path / "gan_only")
  config = tiny.get_config()
  src = tmp_path / "images"
  src.mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
  with pytest.raises(ConfigError, match="segment.route='distilled'.*train_segmenter"):
    inference.segment(config, gan_only, str(src), str(tmp_path / "out"))
  with pytest.raises(ConfigError, match="no trained checkpoint.*trained: none"):
    evaluate.evaluate(config, gan_only)
  assert not os.path.exists(tmp_path / "out")
  with pytest.raises(ConfigError, match="no GAN checkpoint"):
    train_segmenter.train_and_evaluate(config, str(tmp_path / "empty"))


# ------------------------------------------------------------------------- the Python API


def test_api_samples_are_the_sample_modes_pngs_and_the_generator_is_pure(trained, tmp_path):
  import layered_gan_jax as lg  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import visualization  # pylint: disable=g-import-not-at-top

  config, workdir = trained
  run = lg.load_run(workdir)
  assert (run.step, run.resolution, run.config.train.max_steps) == (6, 16, 6)
  layers = run.sample(5, seed=3, truncation=0.7)
  assert {k: v.shape for k, v in layers.items()} == {
    "composite": (5, 16, 16, 3),
    "background": (5, 16, 16, 3),
    "foreground": (5, 16, 16, 3),
    "mask": (5, 16, 16),
  }
  assert layers["mask"].min() >= 0 and layers["mask"].max() <= 1
  out = tmp_path / "cli"
  inference.sample(config, workdir, str(out), num_samples=5, truncation=0.7, seed=3)
  for name in inference.LAYERS:
    want = np.stack([np.asarray(Image.open(out / name / f"{i:05d}.png")) for i in range(5)])
    got = visualization.to_uint8(layers[name], (0.0, 1.0) if name == "mask" else (-1.0, 1.0))
    if got.ndim == 3:  # The mask's PNG is grey written as RGB.
      got = np.repeat(got[..., None], want.shape[-1], axis=-1)
    np.testing.assert_array_equal(got, want, err_msg=name)
  # The pure generator inside jax.jit and jax.vmap: the first samples of seed 3, untruncated.
  gen = run.generator()
  _, k_z, k_noise = jax.random.split(jax.random.PRNGKey(3), 3)
  z = jax.random.normal(k_z, (16, gen.style_dim))
  drawn = jax.jit(gen.apply)(gen.params, z, k_noise)
  plain = run.sample(2, seed=3)
  np.testing.assert_allclose(np.asarray(gen.composite(drawn))[:2], plain["composite"], atol=1e-5)
  keys = jax.random.split(k_noise, 2)
  both = jax.vmap(lambda k: gen.apply(gen.params, z[:2], k)["mask"])(keys)
  np.testing.assert_allclose(both[0], gen.apply(gen.params, z[:2], keys[0])["mask"], atol=1e-5)


def test_api_masks_are_the_segment_modes_for_rgb_grey_and_rgba_images(trained, tmp_path):
  import layered_gan_jax as lg  # pylint: disable=g-import-not-at-top

  config, workdir = trained
  rng = np.random.default_rng(1)
  images = {
    "rgb": rng.integers(0, 255, (40, 30, 3), dtype=np.uint8),
    "grey": rng.integers(0, 255, (20, 50), dtype=np.uint8),
    "rgba": rng.integers(0, 255, (24, 24, 4), dtype=np.uint8),
  }
  src = tmp_path / "in"
  src.mkdir()
  for name, image in images.items():
    Image.fromarray(image).save(src / f"{name}.png")
  inference.segment(config, workdir, str(src), str(tmp_path / "out"))
  run = lg.load_run(workdir)
  masks = run.segment(list(images.values()))
  for (name, image), soft in zip(images.items(), masks):
    assert soft.shape == image.shape[:2] and soft.dtype == np.float32
    png = np.asarray(Image.open(tmp_path / "out" / f"{name}_mask.png"))
    np.testing.assert_array_equal((soft >= 0.5) * 255, png, err_msg=name)
  # The route as a pure function of its parameters, inside the user's jax.jit.
  seg = run.segmenter()
  x = rng.uniform(-1, 1, (jax.device_count(), 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(
    jax.jit(seg.apply)(seg.params, x), run.route().predict(x), rtol=1e-6, atol=1e-6
  )


def test_api_scores_are_the_evaluate_modes_figures():
  import layered_gan_jax as lg  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.metrics import segmentation  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(2)
  gt = [rng.random((12, 10)) < 0.3, rng.random((12, 10)) < 0.5, rng.random((7, 9)) < 0.4]
  masks = [rng.random(g.shape).astype(np.float32) for g in gt]
  images = [rng.integers(0, 255, g.shape + (3,), dtype=np.uint8) for g in gt]
  scores = lg.score_masks(masks, gt, images=images, baselines=("full_image", "center_prior"))
  per_image = [segmentation.segmentation_metrics(m >= 0.5, g, scores=m) for m, g in zip(masks, gt)]
  for key, value in scores["masks"].items():
    assert value == pytest.approx(np.mean([s[key] for s in per_image]), rel=1e-9), key
  full = [segmentation.foreground_iou(np.ones_like(g), g) for g in gt]
  assert scores["baselines"]["full_image"]["fg_iou"] == pytest.approx(np.mean(full), rel=1e-9)
  perfect = lg.score_masks([g.astype(np.float32) for g in gt], gt)
  assert perfect == {"masks": dict.fromkeys(("fg_iou", "miou", "pixel_accuracy", "max_fbeta"), 1.0)}


def test_api_fid_is_the_fid_modes(trained, tmp_path, monkeypatch):
  """With a stand-in feature extractor (colour moments): the API's FID / KID equal
  ``--mode=fid``'s on the same checkpoint."""
  import layered_gan_jax as lg  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.metrics import fid  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

  class Moments:
    batch_size = 8

    def __call__(self, images):
      x = np.asarray(images, np.float64) / 255.0
      return np.concatenate([x.mean((1, 2)), (x**2).mean((1, 2))], axis=1)

  monkeypatch.setattr(fid, "extractor_for", lambda path="": Moments())
  monkeypatch.setattr(inception_weights, "cache_dir", lambda: str(tmp_path / "cache"))
  config, workdir = trained
  config = config.copy_and_resolve_references()
  config.eval.fid_samples, config.eval.fid_real_images = 12, 16
  cli = evaluate.fid_of_checkpoint(config, workdir)
  api = lg.load_run(workdir).fid(num_samples=12, real_images=16)
  assert (api["fid"], api["kid"], api["num_generated"]) == (cli["fid"], cli["kid"], 12)


def test_api_bad_arguments_are_one_clear_exception_each(trained, tmp_path):
  import layered_gan_jax as lg  # pylint: disable=g-import-not-at-top

  with pytest.raises(ConfigError, match="no trained run in"):
    lg.load_run(str(tmp_path))
  run = lg.load_run(trained[1])
  cases = [
    (lambda: run.segment(np.zeros((4, 4, 3), np.float32)), "expected uint8 pixels"),
    (lambda: run.segment([]), "non-empty"),
    (lambda: run.segment(np.zeros((4, 4), np.uint8)), r"for one image pass images\[None\]"),
    (lambda: run.segment([np.zeros((4, 4, 5), np.uint8)]), r"got shape \(4, 4, 5\)"),
    (lambda: run.sample(0), "positive integer"),
    (lambda: run.segment([np.zeros((4, 4, 3), np.uint8)], route="grabcut"), "choose one of"),
    (lambda: lg.score_masks([np.zeros((3, 3))], [np.zeros((3, 4))]), "is \\(3, 3\\) but"),
  ]
  for call, message in cases:
    with pytest.raises(ValueError, match=message):
      call()
