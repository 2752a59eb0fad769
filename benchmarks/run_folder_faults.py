"""The faults a long run's folder meets, against the real command line: a second writer, a full
file system, a damaged checkpoint, a non-finite loss, a workdir that is a file.

  python -m benchmarks.run_folder_faults [--json=benchmarks/results/run_folder_faults.json]
      [--cases=second_writer,full_disk_first,...]

Every case trains ``configs/tiny.py`` as benchmarks/fault_injection.py does (one 8 px stage,
24 iterations, a checkpoint every 12, a log line per iteration), without ``--library_logs``
(what a user sees), injects the fault, checks the one line and the exit status of the stop,
then reruns the same command and compares every array of the final checkpoint bit for bit with
an uninterrupted run.

A full file system is a small tmpfs mounted over the workdir (:func:`small_disk`; root with the
right to mount) filled with a ballast file when a chosen log line appears; where mounting is not
allowed, the child's file-size limit is set to 0 at that line instead (``prlimit``: every write
that grows a file then fails with EFBIG through the same code). tests/test_reliability.py runs
the same cases.
"""

import argparse
import contextlib
import errno
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from benchmarks import fault_injection as fi
from benchmarks.common import machine

COMPILED_LINE = r"Compiled the train step of stage"


def saved_line(step: int) -> str:
  return rf"Saved checkpoint of step {step}$"


def progress_line(step: int) -> str:
  """The console's line of iteration ``step`` (layered_gan_jax/console.py)."""
  return rf"GAN step {step}/{fi.STEPS} "


def user_args(workdir: str, *extra: str):
  """fault_injection's command line as a user runs it: Orbax's and clu's lines hidden."""
  return [a for a in fi.train_args(workdir, fi.STEPS, *extra) if a != "--library_logs"]


def stop_lines(r: fi.Run):
  """The lines of a stop: ``error: ...`` or ``stopped: ...``, and every traceback line."""
  return [l for l in r.lines if l.startswith(("error: ", "stopped: ", "Traceback"))]


# ------------------------------------------------------------------------ a full file system


def can_mount() -> bool:
  """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as on the CI machine)."""
  if os.geteuid() != 0:
    return False
  with tempfile.TemporaryDirectory() as d:
    ok = (
      subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True
      ).returncode
      == 0
    )
    if ok:
      subprocess.run(["umount", d], check=True)
    return ok


@contextlib.contextmanager
def small_disk(path: str, size_mb: int = 64):
  """A tmpfs of ``size_mb`` MB at ``path`` (made) for the block, or ``path`` as it is where
  mounting is not allowed; yields whether it is a mount."""
  os.makedirs(path, exist_ok=True)
  mounted = (
    can_mount()
    and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", path]).returncode
    == 0
  )
  try:
    yield mounted
  finally:
    if mounted:
      subprocess.run(["umount", "-l", path], check=False)


# Room left on the full disk: the event file's few KB per log step fit, a checkpoint of the
# tiny GAN (about 1 MB; its largest files 100-150 KB) does not.
LEFT_BYTES = 256 << 10


def filler(path: str, mounted: bool):
  """The action for ``fi.Run``'s trigger: fills the file system of ``path`` (a mount) with a
  ballast file up to :data:`LEFT_BYTES`, else limits the child's file size to 100 KB (larger
  than the event file, smaller than a checkpoint's array files)."""

  def fill(run: fi.Run):
    if not mounted:
      resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (100 << 10, 100 << 10))
      return
    with open(os.path.join(path, "ballast"), "wb") as f:
      chunk = b"\1" * (64 << 10)
      try:
        while True:
          f.write(chunk)
          f.flush()
      except OSError as e:
        if e.errno != errno.ENOSPC:
          raise
      f.truncate(max(0, f.tell() - LEFT_BYTES))

  return fill


def free_space(path: str):
  ballast = os.path.join(path, "ballast")
  if os.path.exists(ballast):
    os.remove(ballast)


# ------------------------------------------------------------------------------- the lease


def plant_lease(workdir: str, pid: int, host: str = None, age_s: float = 0.0, mode="train"):
  """A writer lease of process ``pid`` (of ``host``, default this one) on the GAN's checkpoint
  folder, last renewed ``age_s`` seconds ago."""
  from layered_gan_jax.run import (
    layout,  # pylint: disable=g-import-not-at-top
    lease,  # pylint: disable=g-import-not-at-top
  )

  directory = os.path.join(workdir, layout.GAN_DIR)
  os.makedirs(directory, exist_ok=True)
  record = {
    "host": host or socket.gethostname(),
    "pid": pid,
    "pid_start": lease._process_start(pid),  # pylint: disable=protected-access
    "mode": mode,
    "started": "2026-12-07T00:00:00+00:00",
    "command": "planted",
    "token": uuid.uuid4().hex,
    "renewed": time.time() - age_s,
  }
  with open(os.path.join(directory, lease.LEASE_FILE), "w") as f:
    json.dump(record, f)


# ------------------------------------------------------------------------------------ cases


def case_second_writer(root, ctx):
  """A second training on the workdir of a running one is refused in one line (exit 2), the
  first ends as if alone."""
  case = fi.Case(
    "second_writer",
    "train; while it runs, the same command in a second process",
    "the second refused in one line, exit 2; the first bit-identical",
  )
  workdir = os.path.join(root, "second_writer")
  second = {}

  def start_second(run):
    second["run"] = fi.run(user_args(workdir))

  first = case.run(user_args(workdir), signal_on=(progress_line(3), start_second))
  r = second["run"]
  case.commands.append(r.command + "  # while the first runs")
  case.check(
    r.proc.returncode == 2
    and len(r.lines) == 1
    and "is being written by another training" in r.lines[0],
    f"second: exit {r.proc.returncode}, {len(r.lines)} line(s): {r.lines[:1]}",
  )
  case.check(first.proc.returncode == 0, f"first: exit {first.proc.returncode}")
  diff = fi.compare(ctx["reference"], fi.final_arrays(workdir)[1])
  case.check(not diff, "first: " + (diff or "bit-identical"))
  return case


def case_stale_lease(root, ctx):
  """A lease left by a process of this host that is gone is taken over with one warning."""
  case = fi.Case(
    "stale_lease",
    "a lease of a dead process (kill -9 leaves it), then train",
    "one warning line, then the run as if alone",
  )
  workdir = os.path.join(root, "stale_lease")
  dead = subprocess.Popen(["true"])
  dead.wait()
  plant_lease(workdir, dead.pid)
  r = case.run(user_args(workdir))
  warned = [l for l in r.lines if "Taking over the writer lease" in l]
  case.check(
    r.proc.returncode == 0 and len(warned) == 1,
    f"exit {r.proc.returncode}, {len(warned)} take-over line(s)",
  )
  diff = fi.compare(ctx["reference"], fi.final_arrays(workdir)[1])
  case.check(not diff, diff or "bit-identical")
  return case


def _full_disk(root, ctx, name, trigger, failed_step, resume):
  case = fi.Case(
    name,
    f"the file system fills at /{trigger}/",
    f"exit 5 in one line naming the checkpoint of step {failed_step}; the rerun "
    f"resumes from {resume} and ends bit-identical",
  )
  disk = os.path.join(root, name)
  with small_disk(disk) as mounted:
    workdir = os.path.join(disk, "run")
    fill = filler(disk, mounted)
    before = {}

    def hash_then_fill(run):
      if resume is not None:
        before[resume] = tree_hash(os.path.join(fi.checkpoint_dir(workdir), str(resume)))
      fill(run)

    r = case.run(user_args(workdir), signal_on=(trigger, hash_then_fill))
    lines = stop_lines(r)
    if resume is not None:
      after = tree_hash(os.path.join(fi.checkpoint_dir(workdir), str(resume)))
      case.check(
        after == before[resume],
        f"checkpoint {resume}: hash {before[resume]} at the fault, {after} after the stop",
      )
    case.check(
      r.proc.returncode == 5
      and len(lines) == 1
      and lines[0] == r.lines[-1]
      and f"could not write the checkpoint of step {failed_step}" in lines[0],
      f"{'tmpfs' if mounted else 'file-size limit 100 KB'}: exit {r.proc.returncode}, "
      f"stop lines {lines}",
    )
    free_space(disk)
    again = case.run(user_args(workdir))
    case.check(
      again.proc.returncode == 0 and fi.resumed_from(again) == resume,
      f"rerun: exit {again.proc.returncode}, resumed from {fi.resumed_from(again)}",
    )
    diff = fi.compare(ctx["reference"], fi.final_arrays(workdir)[1])
    case.check(not diff, diff or "bit-identical")
  return case


def case_full_disk_first(root, ctx):
  return _full_disk(root, ctx, "full_disk_first", COMPILED_LINE, fi.STEPS // 2, None)


def case_full_disk_later(root, ctx):
  return _full_disk(
    root, ctx, "full_disk_later", saved_line(fi.STEPS // 2), fi.STEPS, fi.STEPS // 2
  )


def case_non_finite(root, ctx):
  del ctx
  case = fi.Case(
    "non_finite",
    "train with --config.train.lr=1e8",
    "exit 4 in one line naming the step and the last good checkpoint",
  )
  r = case.run(user_args(os.path.join(root, "non_finite"), "--config.train.lr=1e8"))
  lines = stop_lines(r)
  case.check(
    r.proc.returncode == 4 and len(lines) == 1 and "non-finite" in lines[0],
    f"exit {r.proc.returncode}, stop lines {lines}",
  )
  return case


def tree_hash(path: str) -> str:
  """sha256 over the relative paths and bytes of every file under ``path`` (12 hex digits)."""
  h = hashlib.sha256()
  for root, dirs, names in sorted(os.walk(path)):
    dirs.sort()
    for name in sorted(names):
      full = os.path.join(root, name)
      h.update(os.path.relpath(full, path).encode())
      with open(full, "rb") as f:
        h.update(f.read())
  return h.hexdigest()[:12]


def flip_a_byte(step_dir: str) -> str:
  """Inverts one byte in the middle of the step's largest file (an array data file)."""
  path = max(
    (os.path.join(r, n) for r, _, names in os.walk(step_dir) for n in names), key=os.path.getsize
  )
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  return path


def case_damaged_latest(root, ctx):
  """A finished run whose latest checkpoint has one damaged byte: the rerun of the same
  command skips it with one warning, resumes from the previous one, ends bit-identical, and
  the damaged step is kept aside."""
  case = fi.Case(
    "damaged_latest",
    "a finished run; one byte of step 24's largest file inverted; the same command again",
    "one warning, resumed from 12, bit-identical; 24 moved to 24.damaged",
  )
  workdir = os.path.join(root, "damaged")
  r = case.run(user_args(workdir))
  case.check(r.proc.returncode == 0, f"first run: exit {r.proc.returncode}")
  ckpt_dir = fi.checkpoint_dir(workdir)
  flip_a_byte(os.path.join(ckpt_dir, str(fi.STEPS)))
  kept = tree_hash(os.path.join(ckpt_dir, str(fi.STEPS // 2)))
  damaged = tree_hash(os.path.join(ckpt_dir, str(fi.STEPS)))
  again = case.run(user_args(workdir))
  warned = [l for l in again.lines if "Skipping a damaged checkpoint" in l]
  case.check(
    again.proc.returncode == 0 and len(warned) == 1 and fi.resumed_from(again) == fi.STEPS // 2,
    f"rerun: exit {again.proc.returncode}, {len(warned)} warning line(s), resumed "
    f"from {fi.resumed_from(again)}",
  )
  aside = os.path.join(ckpt_dir, f"{fi.STEPS}.damaged")
  case.check(
    os.path.isdir(aside) and tree_hash(aside) == damaged,
    f"damaged step kept aside as {os.path.basename(aside)}: hash {damaged} before, "
    f"{tree_hash(aside) if os.path.isdir(aside) else 'missing'} after",
  )
  case.check(True, f"step {fi.STEPS // 2} hash {kept} before the rerun")
  diff = fi.compare(ctx["reference"], fi.final_arrays(workdir)[1])
  case.check(not diff, diff or "bit-identical")
  return case


CASES = {
  "second_writer": case_second_writer,
  "stale_lease": case_stale_lease,
  "full_disk_first": case_full_disk_first,
  "full_disk_later": case_full_disk_later,
  "non_finite": case_non_finite,
  "damaged_latest": case_damaged_latest,
}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", default="benchmarks/results/run_folder_faults.json")
  parser.add_argument("--cases", default=",".join(CASES))
  args = parser.parse_args()
  results = []
  with tempfile.TemporaryDirectory() as root:
    straight = os.path.join(root, "straight")
    r = fi.run(user_args(straight))
    assert r.proc.returncode == 0, r.tail()
    ctx = {"reference": fi.final_arrays(straight)[1]}
    for name in args.cases.split(","):
      case = CASES[name](root, ctx)
      results.append(case.result())
      print(f"{name:18s} {'pass' if case.ok else 'FAIL'}  {case.result()['observed']}", flush=True)
  with open(args.json, "w") as f:
    json.dump({"machine": machine(), "versions": fi.versions(), "cases": results}, f, indent=2)
  sys.exit(0 if all(c["pass"] for c in results) else 1)


if __name__ == "__main__":
  main()
