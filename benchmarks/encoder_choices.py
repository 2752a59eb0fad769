"""Which encoder wins? The open choices of SPEC section 6, measured on one frozen GAN.

  python -m benchmarks.encoder_choices --gan_workdir=DIR [--config=configs/synthetic.py] \
      [--variants=w_plus,w,z,z_per_generator,w_plus_fixed_noise,w_plus_latent] \
      [--steps=600] [--config.FIELD=VALUE ...] --json=benchmarks/results/encoder_choices.json

``--gan_workdir`` holds a trained GAN (``checkpoints/``, e.g. the README's main job). Each
variant trains a fresh encoder for ``--steps`` steps against that frozen EMA generator and
critic (the GAN checkpoints are linked, never written), then is evaluated on the synthetic test
split exactly as ``--mode=evaluate`` does (``config.eval.max_examples`` images; baselines are
not recomputed: they do not depend on the encoder). Same seed, data order, width, learning rate
and step count for every variant; only the listed fields differ:

  w_plus               target=w_plus (a style per block and generator), noise=zero
  w                    target=w (one style per generator), noise=zero
  z                    target=z (one latent for both generators), noise=zero
  z_per_generator      target=z_per_generator (a latent per generator), noise=zero
  w_plus_fixed_noise   target=w_plus, noise=fixed (a seeded noise draw held fixed)
  w_plus_latent        target=w_plus, noise=zero, latent_weight=1 (extra loss on generated
                       samples whose latents are known)

Prints a table and writes the JSON (per variant: fg_iou, miou, pixel_accuracy, max_fbeta, the
final training losses (means of the last 3 logged values), seconds; command, machine, date).
Rerunning with the same ``--workdir_root`` reuses finished encoders (they resume at their last
step) and only re-evaluates them.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from benchmarks.common import (  # noqa: E402
  apply_overrides,
  command_line,
  gan_checkpoints,
  load_config,
  machine,
  selected,
)

VARIANTS = {
  "w_plus": {"encoder.target": "w_plus", "encoder.noise": "zero"},
  "w": {"encoder.target": "w", "encoder.noise": "zero"},
  "z": {"encoder.target": "z", "encoder.noise": "zero"},
  "z_per_generator": {"encoder.target": "z_per_generator", "encoder.noise": "zero"},
  "w_plus_fixed_noise": {"encoder.target": "w_plus", "encoder.noise": "fixed"},
  "w_plus_latent": {
    "encoder.target": "w_plus",
    "encoder.noise": "zero",
    "encoder.latent_weight": 1.0,
  },
}
METRICS = ("fg_iou", "miou", "pixel_accuracy", "max_fbeta")
LOSSES = ("encoder_loss", "l1", "feature_loss", "mask_coverage")


def final_losses(workdir, last=3):
  """Means of the last ``last`` logged values of the encoder's training scalars (clu events)."""
  import glob  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  values = {}
  for path in sorted(glob.glob(os.path.join(workdir, "encoder", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag in LOSSES and v.HasField("tensor"):
          values.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
  out = {}
  for tag, by_step in values.items():
    tail = [by_step[step] for step in sorted(by_step)][-last:]
    out[tag] = sum(tail) / len(tail)
  return out


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--gan_workdir", required=True)
  p.add_argument("--config", default=os.path.join(REPO, "configs", "synthetic.py"))
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--steps", type=int, default=None, help="encoder.max_steps (default: config)")
  p.add_argument("--workdir_root", default=None, help="default: a new temporary directory")
  p.add_argument("--json", required=True)
  args, args.config_overrides = p.parse_known_args(argv)  # --config.FIELD=VALUE ...
  return args


def main(argv=None):
  args = parse_args(argv)
  variants = selected(args.variants, VARIANTS, "variant")
  gan_ckpt = gan_checkpoints(args.gan_workdir)
  base, overrides = load_config(args.config, args.config_overrides)
  configs = {}
  for name in variants:  # Validate every config before anything runs.
    config = copy.deepcopy(base)
    apply_overrides(config, VARIANTS[name])
    if args.steps:
      config.encoder.max_steps = args.steps
    config.encoder.checkpoint_every_steps = config.encoder.max_steps
    config.eval.baselines = ()
    config.segment.route = "encoder"  # The subject here; the figures are the encoder's.
    config.eval.num_generated = 64  # Mask statistics only (cheap); not the subject here.
    from layered_gan_jax.checks import validate  # pylint: disable=g-import-not-at-top

    validate.validate_config(config, "pipeline")
    configs[name] = config

  import main as entry  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import loading  # pylint: disable=g-import-not-at-top

  root = args.workdir_root or tempfile.mkdtemp(prefix="encoder_choices_")
  start = time.time()
  results = {}
  for name in variants:
    workdir = os.path.join(root, name)
    os.makedirs(workdir, exist_ok=True)
    link = os.path.join(workdir, "checkpoints")
    if not os.path.exists(link):
      os.symlink(gan_ckpt, link)
    t = time.time()
    if not entry.run(configs[name], workdir, "train_encoder"):
      sys.exit(f"error: {name}: stopped by SIGTERM (a checkpoint is saved); rerun to resume")
    ckpt = loading.encoder_checkpointer(workdir)
    encoder_steps = ckpt.latest_step()
    ckpt.close()
    metrics = evaluate.evaluate(configs[name], workdir)
    results[name] = {
      "overrides": VARIANTS[name],
      **{k: float(metrics[k]) for k in METRICS},
      "encoder_steps": int(encoder_steps),
      "final_train": final_losses(workdir),
      "seconds": time.time() - t,
    }
    r = results[name]
    print(
      f"{name:20s} fg_iou {r['fg_iou']:.3f}  miou {r['miou']:.3f}  pixel acc "
      f"{r['pixel_accuracy']:.3f}  train L1 {r['final_train'].get('l1', float('nan')):.4f}  "
      f"feature {r['final_train'].get('feature_loss', float('nan')):.4f}  "
      f"({r['seconds']:.0f} s)",
      flush=True,
    )

  best = max(results, key=lambda k: results[k]["fg_iou"])
  best_recon = min(results, key=lambda k: results[k]["final_train"].get("l1", float("inf")))
  out = {
    "variants": results,
    "best_by_fg_iou": best,
    "best_by_reconstruction_l1": best_recon,
    "final_train_note": "final_train: means of the last 3 logged training values (batch "
    "means of L1, critic-feature loss, total, mask coverage)",
    "gan_workdir": os.path.abspath(args.gan_workdir),
    "config": os.path.relpath(args.config, REPO),
    "overrides": overrides,
    "encoder_steps": configs[variants[0]].encoder.max_steps,
    "eval_images": configs[variants[0]].eval.max_examples,
    "command": command_line("benchmarks.encoder_choices"),
    "machine": machine(),
    "date": datetime.date.today().isoformat(),
    "seconds": time.time() - start,
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w") as f:
    json.dump(out, f, indent=2)
  print(f"best by fg_iou: {best}; best by reconstruction L1: {best_recon}; wrote {args.json}")


if __name__ == "__main__":
  main()
