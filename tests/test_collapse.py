"""Collapse detection: the statistics, the monitor's rule, the stop and its exit status."""

import numpy as np
import pytest

from layered_gan_jax import errors
from layered_gan_jax.training import collapse

HEALTHY = {"binarized_coverage_mean": 0.3, "mask_variation": 0.2}
EMPTY = {"binarized_coverage_mean": 0.001, "mask_variation": 0.0}
FULL = {"binarized_coverage_mean": 0.999, "mask_variation": 0.001}
CONSTANT = {"binarized_coverage_mean": 0.4, "mask_variation": 0.002}


def test_mask_health_by_hand():
  masks = np.zeros((2, 4, 4), np.float32)
  masks[0, :2] = 1.0  # half the image
  masks[1, :2] = 0.6  # soft half
  h = collapse.mask_health(masks[..., None])
  assert h["mask_coverage"] == pytest.approx((8 + 8 * 0.6) / 32)
  assert h["mask_binary_fraction"] == pytest.approx(24 / 32)
  assert h["binarized_coverage_mean"] == pytest.approx(0.5)
  assert h["binarized_coverage_std"] == pytest.approx(0.0)
  assert h["mask_variation"] == pytest.approx(0.2 * 8 / 16)  # std of (1, 0.6) = 0.2 on half
  same = collapse.mask_health(np.repeat(masks[:1], 5, axis=0))
  assert collapse.diagnose(same) == "constant"


def test_monitor_warns_only_after_patience_consecutive_steps():
  m = collapse.CollapseMonitor(patience=3)
  assert [m.update(s, HEALTHY) for s in (10, 20)] == [None, None]
  assert m.update(30, EMPTY) is None and m.update(40, EMPTY) is None
  message = m.update(50, EMPTY)
  assert message.startswith("collapse: the generator's mask has been empty")
  assert "for 3 sample steps (since step 30; last healthy at step 20)" in message
  assert "\n" not in message
  assert m.update(60, EMPTY) is not None  # and at every later collapsed step


@pytest.mark.parametrize(
  "sequence",
  [
    [EMPTY, EMPTY, HEALTHY, EMPTY, EMPTY],  # a healthy step resets the count
    [EMPTY, FULL, CONSTANT, EMPTY, FULL],  # another kind of collapse starts a new count
    [HEALTHY] * 6,
  ],
)
def test_monitor_does_not_warn(sequence):
  m = collapse.CollapseMonitor(patience=3)
  assert all(m.update(10 * i, h) is None for i, h in enumerate(sequence))


def test_monitor_state_survives_a_restart():
  m = collapse.CollapseMonitor(patience=3)
  m.update(10, HEALTHY)
  m.update(20, FULL)
  m.update(30, FULL)
  resumed = collapse.CollapseMonitor(patience=3, state=m.state())
  message = resumed.update(40, FULL)
  assert "full" in message and "since step 20; last healthy at step 10" in message
  never = collapse.CollapseMonitor(patience=1)
  assert "never healthy so far" in never.update(5, CONSTANT)


def test_stop_on_collapse_checkpoints_then_stops(tmp_path, monkeypatch):
  """A run whose mask is diagnosed empty stops after patience sample steps, with a checkpoint
  of that step that records the collapse."""
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import loading, train_gan  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(collapse, "diagnose", lambda health: "empty")
  config = tiny.get_config()
  config.train.start_resolution = config.train.resolution = 8  # one stage: one compile
  config.train.sample_every_steps = 2
  config.train.collapse_patience = 2
  config.train.stop_on_collapse = True
  with pytest.raises(errors.Collapsed, match="empty .* for 2 sample steps .*step 4"):
    train_gan.train_and_evaluate(config, str(tmp_path))
  ckpt = loading.gan_checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 4
  assert ckpt.read_json(4, "meta")["collapse"]["count"] == 2
  ckpt.close()


def test_collapse_exits_with_status_3(tmp_path, monkeypatch, capsys):
  import main  # pylint: disable=g-import-not-at-top

  def collapsed(*args, **kwargs):
    raise errors.Collapsed("collapse: the generator's mask has been empty")

  monkeypatch.setattr(main, "run", collapsed)
  main.FLAGS(["main.py", "--config=configs/tiny.py", f"--workdir={tmp_path}"])
  try:
    with pytest.raises(SystemExit) as e:
      main.main(["main.py"])
  finally:
    main.FLAGS.unparse_flags()
  assert e.value.code == 3
  assert capsys.readouterr().err.strip() == (
    "stopped: collapse: the generator's mask has been empty"
  )
