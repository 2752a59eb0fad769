"""One writer per trained network: a lease file in the network's checkpoint folder.

A trainer (the GAN, the encoder, the distilled segmenter) holds the lease of its own checkpoint
folder for its lifetime, so two trainings of one network never write into the same folder,
while the encoder and the segmenter may still train side by side on one finished GAN, and the
modes that only read checkpoints (evaluate, fid, sample, segment) never look at it.

The lease is ``<checkpoint folder>/writer.json``: the holder's host, process id (and, on
Linux, the process's start time, so that a reused pid is not taken for the holder), the mode,
when it started and when it was last renewed. Another process that wants to write the folder:

* finds no lease, or its own process's: takes it;
* finds one of a process of this host that is gone: takes it over with one warning line;
* finds one of another host (or one it cannot judge): takes it over with one warning line if it
  was not renewed for ``stale_after_s`` seconds, else is refused (:class:`LeaseHeld`, a
  ConfigError: one line, exit status 2) with the holder and what to do.

The holder renews it at checkpoint and log steps, never per iteration, and removes it when it
stops (a kill -9 leaves it: the next run on the host sees the process gone). Multi-host runs:
process 0 holds the lease for the job.

What it guarantees: on a local or network file system the lease file is written whole under a
name of its own and hard-linked to ``writer.json`` (the link fails if the name exists, so two
processes starting at the same moment cannot both create it, and no reader sees half a lease),
and every take-over is read back before the holder writes anything. On an object store
(``gs://``) etils offers no compare-and-swap: the lease is written whole and read back, so two
writers started within the same second of each other may both believe they hold it; a writer
that finds at a renewal that another took the lease over stops with :class:`LeaseLost` before
writing again (docs/reliability.md).
"""

import datetime
import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Dict, Optional

from absl import logging
from etils import epath

from layered_gan_jax import files
from layered_gan_jax.errors import ConfigError

LEASE_FILE = "writer.json"
READERS = "readers"  # <checkpoint folder>/readers/<token>.json: the steps being read.
# A hold of another host (or on an object store, seen from another host) not older than this
# is honoured: a reader (evaluate, fid, sample) may read one step for a long time.
READ_HOLD_STALE_S = 6 * 3600.0


class LeaseHeld(ConfigError):
  """Another live process writes this network's checkpoints."""


class LeaseLost(ConfigError):
  """This process's lease was taken over (it looked stale to another writer): stop writing."""


def _process_start(pid: int) -> Optional[str]:
  """The start time of process ``pid`` in clock ticks since boot (Linux), None elsewhere or if
  there is no such process."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      stat = f.read().decode(errors="replace")
  except OSError:
    return None
  return stat.rsplit(")", 1)[-1].split()[19]  # Field 22 of proc(5); the name may hold spaces.


def _alive(pid: int, start: Optional[str]) -> bool:
  """Whether process ``pid`` of this host runs (and is the one that started at ``start``)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process: it exists.
    pass
  return start is None or _process_start(pid) in (None, start)


def _describe(holder: Dict[str, Any]) -> str:
  started = holder.get("started", "?")
  renewed = holder.get("renewed")
  age = "" if renewed is None else f", renewed {time.time() - float(renewed):.0f} s ago"
  return (
    f"--mode={holder.get('mode', '?')}, process {holder.get('pid', '?')} on host "
    f"{holder.get('host', '?')} since {started}{age}"
  )


class Lease:
  """``lease = Lease(directory, mode, stale_after_s)``; ``lease.acquire()`` (raises
  :class:`LeaseHeld`), ``lease.renew()`` (raises :class:`LeaseLost`), ``lease.release()``.
  Also a context manager. ``enabled=False`` (processes other than the first) does nothing."""

  def __init__(self, directory: str, mode: str, stale_after_s: float, enabled: bool = True):
    self.directory = epath.Path(directory)
    self.path = self.directory / LEASE_FILE
    self.mode, self.stale_after_s, self.enabled = mode, float(stale_after_s), enabled
    self._record: Optional[Dict[str, Any]] = None

  # ---------------------------------------------------------------------------- reading

  def holder(self) -> Optional[Dict[str, Any]]:
    """The lease as written (``{}`` if unreadable), or None when there is none."""
    try:
      text = self.path.read_text()
    except (FileNotFoundError, NotADirectoryError):
      return None
    try:
      holder = json.loads(text)
    except ValueError:
      return {}
    return holder if isinstance(holder, dict) else {}

  def _ours(self, holder: Optional[Dict[str, Any]]) -> bool:
    return (
      bool(holder) and self._record is not None and holder.get("token") == self._record["token"]
    )

  def takeover_reason(self, holder: Dict[str, Any]) -> Optional[str]:
    """Why ``holder``'s lease may be taken over, or None if it is live."""
    if not holder or "pid" not in holder:
      return "the lease file is unreadable"
    if holder.get("host") == socket.gethostname():
      pid = int(holder["pid"])
      if pid == os.getpid():
        return "it is this process's own"
      if not _alive(pid, holder.get("pid_start")):
        return f"process {pid} of this host is gone"
      return None
    age = time.time() - float(holder.get("renewed", 0.0))
    if age > self.stale_after_s:
      return (
        f"it was not renewed for {age:.0f} s (> runtime.lease_stale_after_s={self.stale_after_s:g})"
      )
    return None

  def check(self) -> None:
    """Raises :class:`LeaseHeld` if another live process holds the lease (reads only)."""
    if not self.enabled:
      return
    holder = self.holder()
    if holder is not None and not self._ours(holder) and self.takeover_reason(holder) is None:
      raise LeaseHeld(
        f"{self.directory} is being written by another training ({_describe(holder)}); "
        "wait for it to finish or stop it, or train into another --workdir (reading modes "
        "such as evaluate, fid, sample and segment may run beside it). If that process is "
        f"gone for good, delete {self.path}"
      )

  # ---------------------------------------------------------------------------- writing

  def _write(self, exclusive: bool) -> None:
    self._record["renewed"] = time.time()
    data = json.dumps(self._record, indent=1).encode()
    if exclusive and not files.is_uri(self.path):
      # Written whole under a name of its own, then linked to the lease's name: link() fails
      # if the name exists, and a reader never sees a half-written lease.
      self.directory.mkdir(parents=True, exist_ok=True)
      tmp = self.path.with_name(f"{LEASE_FILE}.{self._record['token']}.tmp")
      tmp.write_bytes(data)
      try:
        os.link(tmp, self.path)
      finally:
        tmp.unlink()
    else:
      files.write_bytes(self.path, data)

  def acquire(self) -> "Lease":
    if not self.enabled:
      return self
    self._record = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "pid_start": _process_start(os.getpid()),
      "mode": self.mode,
      "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "command": " ".join(sys.argv),
      "token": uuid.uuid4().hex,
    }
    holder = self.holder()
    if holder is not None:
      self.check()
      reason = self.takeover_reason(holder)
      if holder.get("pid") != os.getpid() or holder.get("host") != socket.gethostname():
        logging.warning(
          "Taking over the writer lease of %s (%s): %s", self.directory, _describe(holder), reason
        )
      try:
        self.path.unlink()
      except FileNotFoundError:
        pass
    try:
      self._write(exclusive=True)
    except FileExistsError:  # Another process created it between our read and our write.
      self._record = None
      self.check()
      raise LeaseHeld(
        f"{self.directory} was just claimed by another training; train into "
        "another --workdir or wait for it to finish"
      ) from None
    if not self._ours(self.holder()):  # An object store, or a take-over raced with ours.
      holder, self._record = self.holder() or {}, None
      raise LeaseHeld(
        f"{self.directory} is being written by another training "
        f"({_describe(holder)}); train into another --workdir or wait for it"
      )
    return self

  def renew(self, check: bool = False) -> None:
    """Writes the lease's renewal time once a tenth of ``stale_after_s`` has passed since the
    last (a log step may come every second); raises :class:`LeaseLost` if another process took
    the lease over. ``check`` (before a checkpoint) reads the lease even when no renewal is
    due."""
    if not self.enabled or self._record is None:
      return
    due = time.time() - self._record["renewed"] >= self.stale_after_s / 10
    if not (due or check):
      return
    holder = self.holder()
    if not self._ours(holder):
      record, self._record = self._record, None
      raise LeaseLost(
        f"the writer lease of {self.directory} was taken over by another training "
        f"({_describe(holder or {})}) while this one ({record['mode']}) ran; this process "
        "stops without writing more. Run one training per network and --workdir"
      )
    if due:
      self._write(exclusive=False)

  def release(self) -> None:
    """Removes the lease if this process still holds it."""
    if not self.enabled or self._record is None:
      return
    try:
      if self._ours(self.holder()):
        self.path.unlink()
    except FileNotFoundError:
      pass
    finally:
      self._record = None

  def __enter__(self) -> "Lease":
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
    return False


class ReadHold:
  """A reader's claim on one checkpoint step: while it exists, the writer's keep-last-N does
  not remove that step (checkpoints.Checkpointer's preservation policy asks
  :func:`held_steps`). ``with ReadHold(directory, step):`` around the restore. A hold left by
  a process that is gone, or not refreshed for ``stale_after_s``, holds nothing."""

  def __init__(self, directory: str, step: int):
    self.path = epath.Path(directory) / READERS / f"{uuid.uuid4().hex}.json"
    self.step = int(step)

  def __enter__(self) -> "ReadHold":
    try:
      files.write_json(
        self.path,
        {
          "step": self.step,
          "host": socket.gethostname(),
          "pid": os.getpid(),
          "pid_start": _process_start(os.getpid()),
          "renewed": time.time(),
        },
      )
    except OSError as e:  # A read-only run folder: read without a hold.
      logging.warning(
        "Reading step %d of %s without a hold (%s): a training writing there "
        "may remove it meanwhile",
        self.step,
        self.path.parent.parent,
        e,
      )
    return self

  def __exit__(self, *exc):
    try:
      self.path.unlink()
      if not any(True for _ in self.path.parent.iterdir()):
        self.path.parent.rmdir()  # The last reader leaves no folder behind.
    except Exception:  # pylint: disable=broad-except  # Not there, or (gfile) another error.
      pass
    return False


def held_steps(directory: str, stale_after_s: float) -> set:
  """The steps of ``directory`` that live readers hold (see :class:`ReadHold`); the holds of
  readers that are gone are removed (the writer's keep-last-N asks)."""
  folder = epath.Path(directory) / READERS
  held = set()
  try:  # (tf.io.gfile's backends raise their own NotFoundError, not an OSError.)
    paths = list(folder.iterdir()) if folder.exists() else []
  except Exception:  # pylint: disable=broad-except  # Removed by its last reader meanwhile.
    return held
  for path in paths:
    try:
      hold = json.loads(path.read_text())
    except Exception:  # pylint: disable=broad-except  # Removed meanwhile, or being written.
      continue
    if hold.get("host") == socket.gethostname():
      live = _alive(int(hold.get("pid", 0)), hold.get("pid_start"))
    else:
      live = time.time() - float(hold.get("renewed", 0.0)) <= stale_after_s
    if live:
      held.add(int(hold["step"]))
    else:  # A reader killed while it read: its hold is removed, nothing else.
      try:
        path.unlink()
      except OSError:
        pass
  return held
