"""The writer lease of a checkpoint folder (layered_gan_jax/run/lease.py): one writer per network,
a dead or stale holder taken over with one warning, a lost lease noticed before writing.

The command-line cases (a second training refused while the first runs, a dead process's
lease taken over) are in tests/test_reliability.py."""

import json
import os
import socket
import subprocess

import pytest

from benchmarks.run_folder_faults import plant_lease
from layered_gan_jax.errors import ConfigError
from layered_gan_jax.run import layout, lease


def _lease(workdir, stale_after_s=60.0):
  return lease.Lease(os.path.join(workdir, layout.GAN_DIR), "train", stale_after_s)


def _dead_pid():
  p = subprocess.Popen(["true"])
  p.wait()
  return p.pid


def test_acquire_writes_the_holder_and_release_removes_it(tmp_path):
  held = _lease(tmp_path).acquire()
  record = json.loads(held.path.read_text())
  assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
  assert record["mode"] == "train" and record["token"]
  held.release()
  assert not held.path.exists()


def test_a_live_process_of_this_host_is_not_taken_over(tmp_path):
  plant_lease(str(tmp_path), os.getppid(), mode="train_encoder")  # Our parent: alive.
  before = _lease(tmp_path).path.read_bytes()
  with pytest.raises(lease.LeaseHeld) as e:
    _lease(tmp_path).acquire()
  line = str(e.value)
  assert isinstance(e.value, ConfigError) and "\n" not in line
  assert f"process {os.getppid()} on host {socket.gethostname()}" in line
  assert "--mode=train_encoder" in line and "another --workdir" in line
  assert _lease(tmp_path).path.read_bytes() == before  # Not touched.


def test_the_lease_of_a_dead_process_is_taken_over_with_one_warning(tmp_path, caplog):
  plant_lease(str(tmp_path), _dead_pid())
  held = _lease(tmp_path).acquire()
  assert json.loads(held.path.read_text())["pid"] == os.getpid()
  warnings = [r for r in caplog.records if "Taking over the writer lease" in r.getMessage()]
  assert len(warnings) == 1 and "of this host is gone" in warnings[0].getMessage()


def test_a_reused_pid_is_not_the_holder(tmp_path):
  """The planted holder has our parent's pid but another start time: it is gone."""
  plant_lease(str(tmp_path), os.getppid())
  path = _lease(tmp_path).path
  record = json.loads(path.read_text())
  record["pid_start"] = "1"
  path.write_text(json.dumps(record))
  _lease(tmp_path).acquire()


@pytest.mark.parametrize("age,taken", [(30.0, False), (120.0, True)])
def test_another_hosts_lease_is_stale_after_the_configured_time(tmp_path, age, taken):
  plant_lease(str(tmp_path), 1, host="other-host", age_s=age)
  if taken:
    _lease(tmp_path, stale_after_s=60).acquire()
  else:
    with pytest.raises(lease.LeaseHeld, match="on host other-host"):
      _lease(tmp_path, stale_after_s=60).acquire()


def test_an_unreadable_lease_is_taken_over(tmp_path):
  path = _lease(tmp_path).path
  os.makedirs(path.parent)
  path.write_text("{half")
  _lease(tmp_path).acquire()


def test_a_lease_taken_over_is_noticed_before_the_next_write(tmp_path):
  held = _lease(tmp_path).acquire()
  plant_lease(str(tmp_path), os.getppid())  # Another writer thought ours stale.
  with pytest.raises(lease.LeaseLost, match="was taken over by another training"):
    held.renew(check=True)
  held.release()  # Does not remove the other's lease.
  assert json.loads(held.path.read_text())["pid"] == os.getppid()


def test_renewal_writes_only_when_due(tmp_path):
  held = _lease(tmp_path, stale_after_s=60).acquire()
  first = json.loads(held.path.read_text())["renewed"]
  held.renew()
  assert json.loads(held.path.read_text())["renewed"] == first
  held._record["renewed"] -= 7  # pylint: disable=protected-access  # Due after 6 s.
  held.renew()
  assert json.loads(held.path.read_text())["renewed"] > first


def test_two_writers_racing_for_a_free_folder_one_wins(tmp_path, monkeypatch):
  """The other process creates the lease between this one's read and its write."""
  plant_at_read = lease.Lease.holder

  def holder(self):
    found = plant_at_read(self)
    if found is None and not self.path.exists():
      plant_lease(str(tmp_path), os.getppid())
    return found

  monkeypatch.setattr(lease.Lease, "holder", holder)
  with pytest.raises(lease.LeaseHeld, match="by another training"):
    _lease(tmp_path).acquire()
  assert json.loads(_lease(tmp_path).path.read_text())["pid"] == os.getppid()


def test_other_processes_of_a_job_hold_nothing(tmp_path):
  plant_lease(str(tmp_path), os.getppid())
  lease.Lease(os.path.join(tmp_path, layout.GAN_DIR), "train", 60, enabled=False).acquire()


def test_holds_of_live_readers_count_and_those_of_dead_ones_are_removed(tmp_path):
  directory = os.path.join(tmp_path, layout.GAN_DIR)
  with lease.ReadHold(directory, 4):
    dead = lease.ReadHold(directory, 8)
    dead.__enter__()
    record = json.loads(dead.path.read_text())
    record["pid"] = _dead_pid()
    dead.path.write_text(json.dumps(record))
    assert lease.held_steps(directory, 60) == {4}
    assert not dead.path.exists()
  assert lease.held_steps(directory, 60) == set()
  assert not os.path.exists(os.path.join(directory, lease.READERS))
