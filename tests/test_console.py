"""The console: library INFO chatter hidden unless asked for, one progress line per log step."""

import logging as std_logging

from absl import logging

from layered_gan_jax import console


def _record(path, level):
  return std_logging.LogRecord("absl", level, path, 1, "msg", (), None)


def test_library_info_is_hidden_unless_verbose():
  handler = logging.get_absl_handler()
  orbax_info = _record("/site-packages/orbax/checkpoint/checkpoint_manager.py", std_logging.INFO)
  clu_info = _record("/site-packages/clu/metric_writers/logging_writer.py", std_logging.INFO)
  orbax_warning = _record("/site-packages/orbax/checkpoint/x.py", std_logging.WARNING)
  ours = _record("/repo/layered_gan_jax/training/train_gan.py", std_logging.INFO)
  try:
    console.quiet_library_logs(verbose=False)
    console.quiet_library_logs(verbose=False)  # idempotent
    assert [handler.filter(r) for r in (orbax_info, clu_info, orbax_warning, ours)] == [
      False,
      False,
      True,
      True,
    ]
    console.quiet_library_logs(verbose=True)
    assert all(handler.filter(r) for r in (orbax_info, clu_info, orbax_warning, ours))
  finally:
    console.quiet_library_logs(verbose=True)


def test_a_library_workers_traceback_is_hidden_unless_verbose():
  """A write that failed in Orbax's or clu's worker thread reaches the command as an exception
  (one line); the traceback the thread logs is shown with --library_logs only."""
  import sys  # pylint: disable=g-import-not-at-top

  handler = logging.get_absl_handler()
  try:
    raise OSError(28, "No space left on device")
  except OSError:
    exc_info = sys.exc_info()
  clu_error = std_logging.LogRecord(
    "absl",
    std_logging.ERROR,
    "/site-packages/clu/asynclib.py",
    1,
    "Error in producer thread",
    (),
    exc_info,
  )
  our_error = std_logging.LogRecord(
    "absl", std_logging.ERROR, "/repo/layered_gan_jax/console.py", 1, "ours", (), exc_info
  )
  try:
    console.quiet_library_logs(verbose=False)
    assert [handler.filter(r) for r in (clu_error, our_error)] == [False, True]
    console.quiet_library_logs(verbose=True)
    assert handler.filter(clu_error)
  finally:
    console.quiet_library_logs(verbose=True)


def test_tensorflows_start_up_lines_never_come_with_a_later_refusal():
  """TensorFlow writes its banners to stderr at import whatever TF_CPP_MIN_LOG_LEVEL says; the
  held stderr drops them even when the checks pass, so a refusal that comes later (after JAX
  and TensorFlow started) is still the command's only line."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  script = (
    "import sys\n"
    "from layered_gan_jax import console\n"
    "with console.HeldStderr():\n"
    "  import tensorflow\n"
    "print('error: refused after the checks', file=sys.stderr)\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stderr.splitlines() == ["error: refused after the checks"], result.stderr


def test_progress_line():
  line = console.progress_line(
    "GAN", 250, 2500, {"critic": -1.5612, "coverage": 0.6123}, 64.2, 0.25
  )
  assert line == "GAN step 250/2500  critic -1.561  coverage 0.6123  64 img/s  ETA 9m22s"
  assert console.progress_line("x", 0, 100, {}, 1.0, 40.0).endswith("ETA 1h06m")


def test_eta_is_per_stage_and_flop_scaled():
  """8 -> 32 px, 4 iterations per stage at batch 8 then 4 (16 images per phase), 12 in all.
  In the 8 px stage the stages ahead cost more per iteration: a linear ETA (steps left x the
  latest step time) would be far too optimistic."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.training.schedule import Schedule  # pylint: disable=g-import-not-at-top

  t = ml_collections.ConfigDict(
    dict(
      start_resolution=8,
      resolution=32,
      phase_images=16,
      batch_size=8,
      batch_sizes="32:4",
      lr=1e-3,
      lrs="",
      max_steps=12,
    )
  )
  channels = (16, 16, 8, 8)
  s = Schedule(t, channels)
  assert [(st.resolution, st.num_steps) for st in s.stages] == [(8, 4), (16, 4), (32, 4)]
  cost = [
    8 * sum((4 * 2**i) ** 2 * channels[i] ** 2 for i in range(k + 1)) * b / 8
    for k, b in ((1, 8), (2, 8), (3, 4))
  ]
  seconds, scaled = s.eta(2, 1.0)  # 2 left at 8 px (1 s each), 4 at 16 px, 4 at 32 px.
  assert scaled and abs(seconds - (2 + 4 * cost[1] / cost[0] + 4 * cost[2] / cost[0])) < 1e-9
  assert seconds > 1.5 * (12 - 2)  # The linear estimate: 10 s.
  assert s.eta(10, 3.0) == (6.0, False)  # The last stage: measured, nothing scaled.
  # Each later stage's compile at the latest compile time; none for the current stage.
  assert abs(s.eta(2, 1.0, 7.0)[0] - (seconds + 2 * 7.0)) < 1e-9
  assert s.eta(10, 3.0, 7.0) == (6.0, False)
  line = console.progress_line("GAN", 2, 12, {}, 8.0, 1.0, s.eta(2, 1.0))
  assert line.endswith("(later stages FLOP-scaled)")
