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
  ours = _record("/repo/layered_gan_jax/train_gan.py", std_logging.INFO)
  try:
    console.quiet_library_logs(verbose=False)
    console.quiet_library_logs(verbose=False)  # idempotent
    assert [handler.filter(r) for r in (orbax_info, clu_info, orbax_warning, ours)] == [
        False, False, True, True]
    console.quiet_library_logs(verbose=True)
    assert all(handler.filter(r) for r in (orbax_info, clu_info, orbax_warning, ours))
  finally:
    console.quiet_library_logs(verbose=True)


def test_progress_line():
  line = console.progress_line("GAN", 250, 2500, {"critic": -1.5612, "coverage": 0.6123},
                               64.2, 0.25)
  assert line == "GAN step 250/2500  critic -1.561  coverage 0.6123  64 img/s  ETA 9m22s"
  assert console.progress_line("x", 0, 100, {}, 1.0, 40.0).endswith("ETA 1h06m")
