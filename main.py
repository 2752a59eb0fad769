"""Command line of layered_gan_jax.

  python main.py --config=configs/synthetic.py --workdir=/tmp/run            # train the GAN
  python main.py --config=configs/synthetic.py --workdir=/tmp/run --mode=pipeline
  python main.py --config=configs/car.py --workdir=DIR --config.train.max_steps=1000

Modes: train (the GAN), train_encoder, train_segmenter (distilled from the generator),
evaluate, sample, segment, pipeline (train, train_encoder, train_segmenter, evaluate in
sequence), fid (FID / KID of a GAN checkpoint: --step, --config.eval.fid_samples). A bad
flag, config or input (including the data and checkpoints every stage of the mode needs, and
the first training batch) stops with one line on stderr and exit status 2, before anything
is compiled or written (layered_gan_jax/checks/preflight.py). Every other stop the program decides
on is one line too, with its own exit status (layered_gan_jax/errors.py): 3 a collapse
(``train.stop_on_collapse``), 4 a non-finite loss, 5 a write that failed (disk full, no
permission, an object-store error); 0 after SIGTERM. The console shows one progress line per
log step; ``--library_logs`` adds the INFO lines (and tracebacks) of Orbax and clu.
"""

import os
import re
import sys

# TensorFlow (tf.data, tfds, clu's writers) must not claim the accelerator JAX uses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from layered_gan_jax import names  # noqa: E402  (imports nothing)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config", None, "Path to a config file (configs/*.py).", lock_config=True
)
flags.DEFINE_string(
  "workdir",
  None,
  "Run directory: checkpoints, logs, samples, results "
  "(a local path or an object store URI such as gs://bucket/run).",
)
flags.DEFINE_string("mode", "train", " | ".join(names.MODES))
flags.DEFINE_string("output", None, "Output folder for --mode=sample / segment.")
flags.DEFINE_string("input", None, "Image file or folder for --mode=segment.")
flags.DEFINE_integer("num_samples", 16, "Samples for --mode=sample.")
flags.DEFINE_float("truncation", None, "Truncation psi for --mode=sample (None = off).")
flags.DEFINE_integer("seed", 0, "Seed of the latents for --mode=sample.")
flags.DEFINE_integer("step", None, "GAN checkpoint step for --mode=fid (default: the latest).")
flags.DEFINE_bool("library_logs", False, "Also show the INFO lines of Orbax and clu.")


def _stop(line: str, status: int) -> None:
  """A stop the program decided on: one line on stderr, no traceback, exit ``status``."""
  logging.flush()
  print(" ".join(str(line).split()), file=sys.stderr)
  sys.exit(status)


def _refuse(message: str) -> None:
  """One line on stderr, exit status 2."""
  _stop("error: " + str(message), 2)  # errors.EXIT_REFUSED (a bad flag: before the package)


def _flag_error_line(e: Exception, argv) -> str:
  """A flag or config-file error as one line (keeps ml_collections' "did you mean" hint)."""
  text = " ".join(str(e).replace("\\n", " ").split())
  typo = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
  if typo or isinstance(e, (AttributeError, KeyError)):  # An override names no field.
    field = typo.group(2) if typo else re.sub(r"[\\'\"]", "", text).split()[0]
    given = [
      a.partition("=")[0]
      for a in argv
      if a.startswith("--config.") and f".{field}." in a.partition("=")[0] + "."
    ]
    line = f"{given[0] if given else field}: the config has no field {field!r}"
    return line + (f'; did you mean "{typo.group(1)}"?' if typo else "")
  path = next((a.partition("=")[2] for a in argv if a.startswith("--config=")), "")
  if isinstance(e, OSError) and "No such file" in text:
    return (
      f"--config={path}: no such file; give an existing config file such as "
      "--config=configs/synthetic.py"
    )
  if not isinstance(e, flags.Error):  # The file itself failed (syntax, import, get_config).
    return f"--config={path}: cannot load this config file: {type(e).__name__}: {text}"
  return text


def parse_flags(argv):
  """absl's parsing plus the config file and its overrides, every failure as one line."""
  try:
    rest = FLAGS(argv)
    if FLAGS.config is None:
      _refuse("--config is missing; give a config file, e.g. --config=configs/synthetic.py")
    FLAGS.config.keys()  # The file is loaded lazily: a missing or broken one fails here.
  except SystemExit:
    raise
  except flags.UnrecognizedFlagError as e:
    _refuse(f"{e}; see python main.py --helpfull")
  except Exception as e:  # pylint: disable=broad-except  # The config file or an override.
    _refuse(_flag_error_line(e, argv))
  return rest


def _hide_accelerators_from_tensorflow():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except Exception:  # pylint: disable=broad-except
    pass


def check_command(
  config, workdir: str, mode: str, output=None, input_path=None, num_samples: int = 16, step=None
) -> None:
  """Every check of the command (layered_gan_jax/checks/preflight.py), before anything is compiled
  or written; raises errors.ConfigError / errors.DataError."""
  from layered_gan_jax.checks import (
    preflight,  # pylint: disable=g-import-not-at-top
    validate,  # pylint: disable=g-import-not-at-top
  )

  preflight.check_flags(mode, workdir, output, input_path, num_samples)
  validate.validate_config(config, mode)  # Before jax or TensorFlow start.
  preflight.check_workdir(config, workdir, mode)
  preflight.check_step(workdir, mode, step)
  preflight.check_writers(config, workdir, mode)
  preflight.check_fid_weights(config, mode)
  _hide_accelerators_from_tensorflow()
  from layered_gan_jax import runtime  # pylint: disable=g-import-not-at-top

  runtime.configure_xla_cpu(config.runtime.xla_cpu_kernels)  # Before JAX creates its backends.
  import jax  # pylint: disable=g-import-not-at-top

  from layered_gan_jax import parallel  # pylint: disable=g-import-not-at-top

  parallel.maybe_initialize_distributed()  # Must precede any use of the devices.
  validate.validate_devices(config, jax.device_count())
  preflight.check_first_batch(config, mode)


def run(
  config,
  workdir: str,
  mode: str,
  *,
  output=None,
  input_path=None,
  num_samples=16,
  truncation=None,
  seed=0,
  step=None,
) -> bool:
  """Runs one mode; False if a SIGTERM stopped it (after a checkpoint), else True. Each mode
  imports its own modules, so that a refused command never pays for them."""
  from layered_gan_jax.errors import Preempted  # pylint: disable=g-import-not-at-top

  try:  # pipeline: train, train_encoder, train_segmenter, evaluate.
    if mode in ("train", "pipeline"):
      from layered_gan_jax.training import train_gan  # pylint: disable=g-import-not-at-top

      train_gan.train_and_evaluate(config, workdir)
    if mode in ("train_encoder", "pipeline"):
      from layered_gan_jax.training import train_encoder  # pylint: disable=g-import-not-at-top

      train_encoder.train_and_evaluate(config, workdir)
    if mode in ("train_segmenter", "pipeline"):
      from layered_gan_jax.training import train_segmenter  # pylint: disable=g-import-not-at-top

      train_segmenter.train_and_evaluate(config, workdir)
  except Preempted as e:  # SIGTERM: checkpoint saved; exit 0, skip later modes.
    logging.warning("%s", e)
    return False
  if mode in ("evaluate", "pipeline"):
    from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate.evaluate(config, workdir)
  elif mode == "sample":
    from layered_gan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top

    inference.sample(
      config, workdir, output, num_samples=num_samples, truncation=truncation, seed=seed
    )
  elif mode == "segment":
    from layered_gan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top

    inference.segment(config, workdir, input_path, output)
  elif mode == "fid":
    from layered_gan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate.fid_of_checkpoint(config, workdir, step)
  return True


def main(argv):
  if len(argv) > 1:
    _refuse(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag=value")
  from layered_gan_jax import (
    console,  # pylint: disable=g-import-not-at-top
    errors,  # pylint: disable=g-import-not-at-top
  )

  console.quiet_library_logs(verbose=FLAGS.library_logs)
  try:
    # TensorFlow's, tfds's and libtpu's start-up lines are held back: printed after the checks
    # pass, dropped when the command is refused.
    with console.HeldStderr(drop_on=(errors.ConfigError, errors.DataError)):
      check_command(
        FLAGS.config,
        FLAGS.workdir,
        FLAGS.mode,
        FLAGS.output,
        FLAGS.input,
        FLAGS.num_samples,
        FLAGS.step,
      )
    from layered_gan_jax.checks import preflight  # pylint: disable=g-import-not-at-top

    preflight.notes(FLAGS.config, FLAGS.mode)  # E.g. which CUB split trains and evaluates.
    run(
      FLAGS.config,
      FLAGS.workdir,
      FLAGS.mode,
      output=FLAGS.output,
      input_path=FLAGS.input,
      num_samples=FLAGS.num_samples,
      truncation=FLAGS.truncation,
      seed=FLAGS.seed,
      step=FLAGS.step,
    )
  except (errors.ConfigError, errors.DataError) as e:
    _refuse(str(e))
  except errors.Collapsed as e:
    _stop(f"stopped: {e}", errors.EXIT_COLLAPSED)
  except errors.NonFiniteLossError as e:
    _stop(f"stopped: {e}", errors.EXIT_NON_FINITE)
  except Exception as e:  # pylint: disable=broad-except
    reason = errors.write_failure_reason(e)
    if reason is None:
      raise  # A bug: its traceback is what a report needs.
    from layered_gan_jax.checks import preflight  # pylint: disable=g-import-not-at-top

    what, where = (
      (e.what, e.where)
      if isinstance(e, errors.WriteFailed)
      else ("a file of the run", getattr(e, "filename", None) or FLAGS.workdir)
    )
    _stop(
      f"stopped: could not write {what} to {where}: {reason}. Nothing complete was "
      f"removed; last complete checkpoints: {preflight.last_checkpoints(FLAGS.workdir)}. "
      "Rerun the same command to resume once the cause is fixed",
      errors.EXIT_WRITE_FAILED,
    )


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
