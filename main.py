"""Command line of layered_gan_jax.

  python main.py --config=configs/synthetic.py --workdir=/tmp/run            # train the GAN
  python main.py --config=configs/synthetic.py --workdir=/tmp/run --mode=pipeline
  python main.py --config=configs/car.py --workdir=DIR --config.train.max_steps=1000

Modes: train (the GAN), train_encoder, train_segmenter (distilled from the generator),
evaluate, sample, segment, pipeline (train, train_encoder, train_segmenter, evaluate in
sequence). A bad config or input stops with one line on stderr and
exit status 2, before anything is compiled or written. A run stopped by
``train.stop_on_collapse`` exits with status 3. The console shows one progress line per log step;
``--library_logs`` adds the INFO lines of Orbax and clu.
"""

import os
import sys

# TensorFlow (tf.data, tfds, clu's writers) must not claim the accelerator JAX uses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, samples, results.")
flags.DEFINE_string("mode", "train", "train | train_encoder | train_segmenter | evaluate | "
                    "sample | segment | pipeline")
flags.DEFINE_string("output", None, "Output folder for --mode=sample / segment.")
flags.DEFINE_string("input", None, "Image file or folder for --mode=segment.")
flags.DEFINE_integer("num_samples", 16, "Samples for --mode=sample.")
flags.DEFINE_float("truncation", None, "Truncation psi for --mode=sample (None = off).")
flags.DEFINE_integer("seed", 0, "Seed of the latents for --mode=sample.")
flags.DEFINE_bool("library_logs", False, "Also show the INFO lines of Orbax and clu.")
flags.mark_flags_as_required(["config", "workdir"])


def _hide_accelerators_from_tensorflow():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except Exception:  # pylint: disable=broad-except
    pass


def run(config, workdir: str, mode: str) -> bool:
  """Dispatches one mode; False if a SIGTERM stopped it (after a checkpoint), else True.
  Imported lazily so that config errors come before heavy imports."""
  from layered_gan_jax import config_validation  # pylint: disable=g-import-not-at-top
  config_validation.validate_config(config, mode)  # Before jax or TensorFlow start.
  _hide_accelerators_from_tensorflow()
  from layered_gan_jax import runtime  # pylint: disable=g-import-not-at-top
  runtime.configure_xla_cpu(config.runtime.xla_cpu_kernels)  # Before JAX creates its backends.
  import jax  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import parallel  # pylint: disable=g-import-not-at-top
  parallel.maybe_initialize_distributed()  # Must precede any use of the devices.
  config_validation.validate_config(config, mode, jax.device_count())
  import importlib  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.preemption import Preempted  # pylint: disable=g-import-not-at-top
  for trainer_mode, trainer in (("train", "train_gan"), ("train_encoder", "train_encoder"),
                                ("train_segmenter", "train_segmenter")):
    if mode in (trainer_mode, "pipeline"):
      module = importlib.import_module(f"layered_gan_jax.{trainer}")
      try:
        module.train_and_evaluate(config, workdir)
      except Preempted as e:  # SIGTERM: checkpoint saved; exit 0, skip later modes.
        logging.warning("%s", e)
        return False
  if mode in ("evaluate", "pipeline"):
    from layered_gan_jax import evaluation  # pylint: disable=g-import-not-at-top
    evaluation.evaluate(config, workdir)
  if mode == "sample":
    from layered_gan_jax import inference  # pylint: disable=g-import-not-at-top
    inference.sample(config, workdir, FLAGS.output, num_samples=FLAGS.num_samples,
                     truncation=FLAGS.truncation, seed=FLAGS.seed)
  if mode == "segment":
    from layered_gan_jax import inference  # pylint: disable=g-import-not-at-top
    inference.segment(config, workdir, FLAGS.input, FLAGS.output)
  return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from layered_gan_jax.config_validation import ConfigError  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.image_io import DataError  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.collapse import Collapsed  # pylint: disable=g-import-not-at-top
  from layered_gan_jax import console  # pylint: disable=g-import-not-at-top
  console.quiet_library_logs(verbose=FLAGS.library_logs)
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except (ConfigError, DataError) as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except Collapsed as e:
    logging.flush()
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(3)



if __name__ == "__main__":
  app.run(main)
