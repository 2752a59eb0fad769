"""Encoders, evaluation and inference on a tiny GAN trained in the test."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from layered_gan_jax import (evaluation, inference, parallel, train_encoder, train_gan)
from layered_gan_jax.config_validation import ConfigError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny GAN (8 -> 16 px, 6 iterations) and its encoder (4 iterations)."""
  workdir = str(tmp_path_factory.mktemp("run"))
  config = tiny.get_config()
  config.train.max_steps = 6
  train_gan.train_and_evaluate(config, workdir)
  train_encoder.train_and_evaluate(config, workdir)
  return config, workdir


def test_encoder_training_lowers_the_reconstruction_loss(trained):
  config, workdir = trained
  config = tiny.get_config()
  config.encoder.lr = 3e-3
  gan = train_gan.load_gan(workdir, config, with_critic=True)
  setup = train_encoder.EncoderSetup(config, gan)
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
  gan = train_gan.load_gan(workdir, config, with_critic=True)
  setup = train_encoder.EncoderSetup(config, gan)
  state = setup.init_state()
  images = parallel.put_batch(np.zeros((8, 16, 16, 3), np.float32))
  state, metrics = jax.jit(train_encoder.make_encoder_step(setup))(state, setup.frozen, images)
  assert np.isfinite(float(metrics["encoder_loss"])) and "latent_loss" in metrics
  layers, recon = setup.predict_fn()(state.params, setup.frozen, images)
  assert recon.shape == (8, 16, 16, 3) and layers["mask"].shape == (8, 16, 16, 1)


def test_evaluate_writes_metrics_baselines_and_panel(trained):
  config, workdir = trained
  result = evaluation.evaluate(config, workdir)
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    saved = json.load(f)
  assert saved == json.loads(json.dumps(result))
  for key in ("fg_iou", "miou", "pixel_accuracy", "max_fbeta"):
    assert 0.0 <= saved[key] <= 1.0
  assert set(saved["baselines"]) == {"full_image", "center_prior", "grabcut"}
  assert saved["num_images"] == config.eval.max_examples
  # Full-image mask: fg IoU = mean object area of the evaluated images.
  assert 0.08 <= saved["baselines"]["full_image"]["fg_iou"] <= 0.4
  assert 0.0 <= saved["generated"]["mask_coverage"] <= 1.0
  assert os.path.exists(os.path.join(workdir, "eval", "panel.png"))


def test_external_segmenter_protocol_with_stand_ins(trained):
  config, workdir = trained
  gan = train_gan.load_gan(workdir, config)
  everything = lambda images: [np.ones(im.shape[:2], bool) for im in images]
  stats = evaluation.generated_mask_statistics(gan, 20, seed=0, batch=8, segmenter=everything)
  assert stats["detected_fraction"] == 1.0 and stats["detected"] == 20
  # IoU of a mask with the full frame is its coverage.
  np.testing.assert_allclose(stats["reference_fg_iou"], stats["binarized_coverage_mean"],
                             rtol=1e-6)
  nothing = lambda images: [None] * len(images)
  stats = evaluation.generated_mask_statistics(gan, 20, seed=0, batch=8, segmenter=nothing)
  assert stats["detected_fraction"] == 0.0
  # Inverted-mask agreement: two-class mIoU(not m, r) == mIoU(m, not r), so it equals the plain
  # agreement with an inverted segmenter.
  r = gan.resolution
  yy, xx = np.mgrid[:r, :r]
  disc = (yy - r / 2) ** 2 + (xx - r / 2) ** 2 < (r / 3) ** 2
  stats = evaluation.generated_mask_statistics(gan, 20, seed=0, batch=8,
                                               segmenter=lambda images: [disc] * len(images))
  flipped = evaluation.generated_mask_statistics(gan, 20, seed=0, batch=8,
                                                 segmenter=lambda images: [~disc] * len(images))
  np.testing.assert_allclose(stats["reference_miou_inverted_mask"], flipped["reference_miou"],
                             rtol=1e-6)
  np.testing.assert_allclose(flipped["reference_miou_inverted_mask"], stats["reference_miou"],
                             rtol=1e-6)


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
    np.testing.assert_array_equal(np.asarray(Image.open(out / layer / "00002.png")),
                                  np.asarray(Image.open(again / layer / "00002.png")))


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
    train_encoder.load_encoder(config, _gan_only_copy(workdir, tmp_path))


def _gan_only_copy(workdir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  dst = tmp_path / "gan_only"
  shutil.copytree(os.path.join(workdir, "checkpoints"), dst / "checkpoints")
  return str(dst)


@pytest.mark.slow
def test_encoder_choices_benchmark_smoke(trained, tmp_path):
  """benchmarks/encoder_choices.py on the tiny GAN: every variant is trained from scratch
  against the same frozen GAN (whose checkpoints it must not touch) and evaluated."""
  from benchmarks import encoder_choices  # pylint: disable=g-import-not-at-top
  _, workdir = trained
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  out = tmp_path / "choices.json"
  encoder_choices.main([f"--gan_workdir={workdir}", "--config=" + os.path.join(
                            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs", "tiny.py"),
                        "--variants=w_plus,z_per_generator", "--steps=3",
                        f"--workdir_root={tmp_path / 'runs'}", f"--json={out}"])
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


def test_encoder_resume_equals_uninterrupted(trained, tmp_path):
  """2 encoder steps, a restart, 2 more: bit for bit the state of 4 uninterrupted steps."""
  import shutil  # pylint: disable=g-import-not-at-top
  _, workdir = trained
  finals = {}
  for name, schedule in (("straight", (4,)), ("restarted", (2, 4))):
    run = tmp_path / name
    shutil.copytree(os.path.join(workdir, train_gan.CHECKPOINT_DIR),
                    run / train_gan.CHECKPOINT_DIR)
    for max_steps in schedule:
      config = tiny.get_config()
      config.encoder.max_steps = max_steps
      config.encoder.checkpoint_every_steps = 2
      state = train_encoder.train_and_evaluate(config, str(run))
    finals[name] = jax.device_get(state)
  assert int(finals["restarted"].step) == 4
  for a, b in zip(jax.tree.leaves(finals["straight"]), jax.tree.leaves(finals["restarted"])):
    np.testing.assert_array_equal(a, b)
