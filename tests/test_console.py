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


def test_eta_is_per_stage_and_flop_scaled():
  """8 -> 32 px, 4 iterations per stage at batch 8 then 4 (16 images per phase), 12 in all.
  In the 8 px stage the stages ahead cost more per iteration: a linear ETA (steps left x the
  latest step time) would be far too optimistic."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.schedule import Schedule  # pylint: disable=g-import-not-at-top
  t = ml_collections.ConfigDict(dict(start_resolution=8, resolution=32, phase_images=16,
                                     batch_size=8, batch_sizes="32:4", lr=1e-3, lrs="",
                                     max_steps=12))
  channels = (16, 16, 8, 8)
  s = Schedule(t, channels)
  assert [(st.resolution, st.num_steps) for st in s.stages] == [(8, 4), (16, 4), (32, 4)]
  cost = [8 * sum((4 * 2 ** i) ** 2 * channels[i] ** 2 for i in range(k + 1)) * b / 8
          for k, b in ((1, 8), (2, 8), (3, 4))]
  seconds, scaled = s.eta(2, 1.0)  # 2 left at 8 px (1 s each), 4 at 16 px, 4 at 32 px.
  assert scaled and abs(seconds - (2 + 4 * cost[1] / cost[0] + 4 * cost[2] / cost[0])) < 1e-9
  assert seconds > 1.5 * (12 - 2)  # The linear estimate: 10 s.
  assert s.eta(10, 3.0) == (6.0, False)  # The last stage: measured, nothing scaled.
  # Each later stage's compile at the latest compile time; none for the current stage.
  assert abs(s.eta(2, 1.0, 7.0)[0] - (seconds + 2 * 7.0)) < 1e-9
  assert s.eta(10, 3.0, 7.0) == (6.0, False)
  line = console.progress_line("GAN", 2, 12, {}, 8.0, 1.0, s.eta(2, 1.0))
  assert line.endswith("(later stages FLOP-scaled)")
