"""Fault injection against the real command line: kill -9, SIGTERM and half-written checkpoints.

  python -m benchmarks.fault_injection [--json=benchmarks/results/fault_injection.json]
      [--seed=0] [--cases=straight,kill9_after_checkpoint,...]

Every case trains ``configs/tiny.py`` at a fixed 8 px (one stage) for ``--steps`` iterations
(default 24, a checkpoint every ``steps / 2``) with ``python main.py ...``, injects a fault,
reruns the same command and compares every array of the final checkpoint (parameters, Adam
states, EMA, RNG key, step) bit for bit with an uninterrupted run of the same command (CPU).

Cases:
* straight: the uninterrupted reference run.
* kill9_after_checkpoint: SIGKILL when iteration k (random in (N/2, N), --seed) is logged,
  after the checkpoint of N/2; the restart must resume from N/2 and end identical.
* kill9_early_in_save / kill9_late_in_save: SIGKILL while the last checkpoint is being written
  (when orbax starts writing its 'state' item / when it starts renaming the written items); the
  previous checkpoint must be intact and used, the restart identical.
* planted_incomplete_steps: a finished run loses its last step, and gets a step folder without
  orbax's commit marker (a half-copied step), a step folder with only the step metadata, and a
  stray temporary folder; the restart must ignore and remove them, resume from N/2 and end
  identical.
* sigterm_mid_run: SIGTERM when iteration k (random in [2, N/2)) is logged: exit status 0 with
  a checkpoint of the step reached; the restart continues to N, identical.
* sigterm_during_startup: SIGTERM while the step is being compiled (before the loop).
* sigterm_in_pipeline: SIGTERM during the GAN stage of --mode=pipeline: the pipeline should stop
  (status 0) instead of going on to train the encoder on an unfinished GAN.

The harness (``Run``, ``train_args``, ``final_arrays``...) is also used by
tests/test_reliability.py.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from benchmarks.common import machine  # noqa: E402  pylint: disable=wrong-import-position

MAIN = os.path.join(REPO, "main.py")
STEPS = 24  # N; a checkpoint every N / 2.


def train_args(workdir: str, steps: int = STEPS, *extra: str):
  """The command line of every case (tiny config, one 8 px stage, a log line per iteration;
  Orbax's and clu's lines shown: the signals are timed on them)."""
  return [
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--library_logs",
    "--config.train.start_resolution=8",
    "--config.train.resolution=8",
    f"--config.train.max_steps={steps}",
    f"--config.train.checkpoint_every_steps={steps // 2}",
    "--config.train.log_every_steps=1",
    "--config.train.sample_every_steps=1000",
    *extra,
  ]


def command_line(args) -> str:
  return "python main.py " + " ".join(shlex.quote(a) for a in args)


def metrics_line(step: int) -> str:
  """A regex for the log line of the metrics of iteration ``step`` (clu's LoggingWriter)."""
  return rf"\] \[{step}\] alpha="


def save_started_line(step: int) -> str:
  """Orbax starts writing the 'state' item of ``step`` (the step's temporary folder exists: the
  line about that folder itself is logged just before it is created)."""
  return (
    rf"Creating tmp directory \S*/checkpoints/{step}\.orbax-checkpoint-tmp/"
    rf"state\.orbax-checkpoint-tmp$"
  )


def save_finalizing_line(step: int) -> str:
  return rf"Renaming \S*/checkpoints/{step}\.orbax-checkpoint-tmp/\w+\.orbax-checkpoint-tmp to"


class Run:
  """``python main.py args`` (or ``program``) in a subprocess; stdout+stderr are read line by line on a thread,
  which sends ``signal_on = (regex, signal)`` to the process as soon as a line matches (or
  calls ``signal_on[1](run)`` if it is a function)."""

  def __init__(self, args, signal_on=None, env=None, program=None):
    self.args = list(args)
    self.command = command_line(args)
    self.lines = []
    self.signal_line = None
    self.signal_sent_at = None
    self._trigger = (re.compile(signal_on[0]), signal_on[1]) if signal_on else None
    self._start = time.time()
    self.seconds = None
    self.proc = subprocess.Popen(
      [sys.executable, "-u"] + list(program or [MAIN]) + self.args,
      cwd=REPO,
      env=dict(os.environ, **(env or {})),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      bufsize=1,
    )
    self._thread = threading.Thread(target=self._read, daemon=True)
    self._thread.start()

  def _read(self):
    for line in self.proc.stdout:
      line = line.rstrip("\n")
      self.lines.append(line)
      if self._trigger and self.signal_line is None and self._trigger[0].search(line):
        self.signal_line = line
        self.signal_sent_at = time.time() - self._start
        if callable(self._trigger[1]):  # An action of the caller's (fill the disk, ...).
          self._trigger[1](self)
          continue
        try:
          os.kill(self.proc.pid, self._trigger[1])
        except ProcessLookupError:
          pass

  def wait(self, timeout: float = 600) -> int:
    try:
      self.proc.wait(timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self._thread.join(30)
    self.seconds = time.time() - self._start
    return self.proc.returncode

  @property
  def output(self) -> str:
    return "\n".join(self.lines)

  def find(self, pattern: str):
    """The first match of ``pattern`` in the output, or None."""
    return re.search(pattern, self.output, re.MULTILINE)

  def tail(self, n: int = 40) -> str:
    return "\n".join(self.lines[-n:])


def run(args, signal_on=None, env=None, timeout: float = 600, program=None) -> Run:
  """``program`` (default: main.py) with ``args``; ``program`` is what follows ``python -u``,
  e.g. ``["-m", "tests.gcs_main"]``."""
  r = Run(args, signal_on, env, program)
  r.wait(timeout)
  return r


def resumed_from(r: Run):
  m = r.find(r"Resumed the GAN from the checkpoint of step (\d+)")
  return int(m.group(1)) if m else None


def stopped_at(r: Run):
  m = r.find(r"(?i)stopped at step (\d+) after SIGTERM")
  return int(m.group(1)) if m else None


def checkpoint_dir(workdir: str) -> str:
  from layered_gan_jax.run import layout  # pylint: disable=g-import-not-at-top

  return os.path.join(workdir, layout.GAN_DIR)


def complete_steps(workdir: str):
  """The complete checkpoint steps of a workdir (as train_gan sees them)."""
  from layered_gan_jax.training import loading  # pylint: disable=g-import-not-at-top

  ckpt = loading.gan_checkpointer(workdir)
  steps = ckpt.all_steps()
  ckpt.close()
  return steps


def leftovers(workdir: str):
  """Names in checkpoints/ that are not complete steps (temporary or uncommitted folders)."""
  from layered_gan_jax.run import layout  # pylint: disable=g-import-not-at-top

  return sorted(os.path.basename(p) for _, p, _ in layout.incomplete_steps(checkpoint_dir(workdir)))


def final_arrays(workdir: str, step=None):
  """``(step, {path: numpy array})`` of the whole training state in the latest (or ``step``)
  checkpoint: both networks, both Adam states, the EMA generator, the RNG key and the step."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import build  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.training import loading  # pylint: disable=g-import-not-at-top

  ckpt = loading.gan_checkpointer(workdir)
  step = ckpt.latest_step() if step is None else step
  config = ml_collections.ConfigDict(ckpt.read_json(step, "config"))
  generator, critic = build.build_generator(config), build.build_critic(config)
  state = loading.restore_gan_state(
    ckpt, step, loading.abstract_gan_state(generator, critic, config)
  )
  ckpt.close()
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def compare(a, b) -> str:
  """'' if the two array dicts are bit-identical, else a description of the differences."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  if a.keys() != b.keys():
    return f"different arrays: {sorted(set(a) ^ set(b))[:5]}"
  bad = []
  for k in a:
    x, y = a[k], b[k]
    if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
      diff = (
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        if x.shape == y.shape and x.size
        else float("nan")
      )
      bad.append(f"{k} (max |diff| {diff:.3g})")
  return "" if not bad else f"{len(bad)} of {len(a)} arrays differ: " + ", ".join(bad[:4])


def plant_incomplete_steps(workdir: str, complete: int, steps=(18, 24)):
  """Half-written checkpoints next to the complete step ``complete``: ``steps[0]`` a step
  folder without the commit marker and with half of its array files missing (a copy that
  stopped halfway), ``steps[1]`` a step folder holding only the step metadata (killed right
  after creating it, on a file system without atomic renames), and a temporary folder
  ``<steps[0] + 2>.orbax-checkpoint-tmp-1234`` with garbage (as left by an orbax that suffixes
  them). Returns the names planted."""
  d = checkpoint_dir(workdir)
  src = os.path.join(d, str(complete))
  a, b = steps
  half = os.path.join(d, str(a))
  shutil.copytree(src, half)
  os.remove(os.path.join(half, "commit_success.txt"))
  data = sorted(
    os.path.join(root, f) for root, _, files in os.walk(os.path.join(half, "state")) for f in files
  )
  for f in data[::2]:
    os.remove(f)
  os.makedirs(os.path.join(d, str(b)))
  shutil.copy(os.path.join(src, "_CHECKPOINT_METADATA"), os.path.join(d, str(b)))
  tmp = os.path.join(d, f"{a + 2}.orbax-checkpoint-tmp-1234")
  os.makedirs(os.path.join(tmp, "state"))
  with open(os.path.join(tmp, "state", "garbage"), "wb") as f:
    f.write(os.urandom(100))
  return [str(a), str(b), os.path.basename(tmp)]


# ------------------------------------------------------------------------------------ cases


class Case:
  def __init__(self, name, done, expected):
    self.name, self.done, self.expected = name, done, expected
    self.observed, self.ok, self.commands, self.runs = [], True, [], []
    self.start = time.time()
    self.date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

  def run(self, args, signal_on=None, env=None) -> Run:
    r = run(args, signal_on, env)
    what = (
      (signal_on[1].__name__ if callable(signal_on[1]) else signal.Signals(signal_on[1]).name)
      if signal_on
      else ""
    )
    self.commands.append(
      command_line(args) + (f"  # {what} on /{signal_on[0]}/" if signal_on else "")
    )
    self.runs.append(r)
    return r

  def check(self, cond: bool, observation: str):
    self.observed.append(observation + ("" if cond else " [UNEXPECTED]"))
    self.ok = self.ok and bool(cond)
    return cond

  def result(self):
    return {
      "case": self.name,
      "done": self.done,
      "expected": self.expected,
      "observed": "; ".join(self.observed),
      "pass": self.ok,
      "seconds": round(time.time() - self.start, 1),
      "commands": self.commands,
      "machine": machine(),
      "date": self.date,
    }


def _restart_and_compare(case, workdir, reference, want_resume):
  r = case.run(train_args(workdir))
  case.check(r.proc.returncode == 0, f"restart exit {r.proc.returncode}")
  case.check(resumed_from(r) == want_resume, f"restart resumed from step {resumed_from(r)}")
  if r.proc.returncode != 0:
    case.check(False, "restart output tail: " + r.tail(5))
    return r
  step, arrays = final_arrays(workdir)
  diff = compare(reference, arrays)
  case.check(
    step == STEPS and not diff,
    f"final step {step}, " + ("bit-identical to the straight run" if not diff else diff),
  )
  return r


def case_straight(root, ctx):
  case = Case(
    "straight", f"{STEPS} iterations in one run", f"exit 0; checkpoints [{STEPS // 2}, {STEPS}]"
  )
  workdir = os.path.join(root, "straight")
  r = case.run(train_args(workdir))
  case.check(r.proc.returncode == 0, f"exit {r.proc.returncode}")
  steps = complete_steps(workdir)
  case.check(steps == [STEPS // 2, STEPS], f"checkpoints {steps}")
  ctx["reference"] = final_arrays(workdir)[1]
  ctx["straight_workdir"] = workdir
  return case


def case_kill9_after_checkpoint(root, ctx):
  half = STEPS // 2
  k = ctx["rng"].randrange(half + 1, STEPS)
  case = Case(
    "kill9_after_checkpoint",
    f"kill -9 when iteration {k} is logged (checkpoint at {half}); rerun",
    f"killed (-9) with checkpoint {half} only; restart resumes from {half}, "
    f"bit-identical at {STEPS}",
  )
  workdir = os.path.join(root, "kill9_after_checkpoint")
  r = case.run(train_args(workdir), (metrics_line(k), signal.SIGKILL))
  case.check(
    r.proc.returncode == -signal.SIGKILL,
    f"exit {r.proc.returncode} ({r.signal_sent_at or 0:.1f} s after start)",
  )
  case.check(complete_steps(workdir) == [half], f"checkpoints after kill {complete_steps(workdir)}")
  _restart_and_compare(case, workdir, ctx["reference"], half)
  return case


def _case_kill9_in_save(root, ctx, name, pattern, where):
  half = STEPS // 2
  case = Case(
    name,
    f"kill -9 {where} of step {STEPS}; rerun",
    f"temporary folder left, checkpoint {half} intact and used; restart bit-identical "
    "and leaves no temporary folder",
  )
  workdir = os.path.join(root, name)
  r = case.run(train_args(workdir), (pattern, signal.SIGKILL))
  case.check(r.proc.returncode == -signal.SIGKILL, f"exit {r.proc.returncode}")
  left = leftovers(workdir)
  case.check(
    complete_steps(workdir) == [half] and bool(left),
    f"checkpoints after kill {complete_steps(workdir)}, incomplete {left}",
  )
  _restart_and_compare(case, workdir, ctx["reference"], half)
  case.check(
    not leftovers(workdir) and complete_steps(workdir) == [half, STEPS],
    f"after restart: checkpoints {complete_steps(workdir)}, incomplete {leftovers(workdir)}",
  )
  return case


def case_kill9_early_in_save(root, ctx):
  return _case_kill9_in_save(
    root,
    ctx,
    "kill9_early_in_save",
    save_started_line(STEPS),
    "when orbax starts writing the 'state' item",
  )


def case_kill9_late_in_save(root, ctx):
  return _case_kill9_in_save(
    root,
    ctx,
    "kill9_late_in_save",
    save_finalizing_line(STEPS),
    "when orbax starts renaming the written items",
  )


def case_planted_incomplete_steps(root, ctx):
  half = STEPS // 2
  case = Case(
    "planted_incomplete_steps",
    f"finished run minus step {STEPS}, plus: step {half + 6} without commit marker "
    f"and half its files, step {STEPS} holding only the step metadata, a stray "
    f"{half + 8}.orbax-checkpoint-tmp-1234; rerun",
    f"restart logs and removes all three, resumes from {half}, bit-identical",
  )
  workdir = os.path.join(root, "planted_incomplete_steps")
  shutil.copytree(ctx["straight_workdir"], workdir)
  shutil.rmtree(os.path.join(checkpoint_dir(workdir), str(STEPS)))
  planted = plant_incomplete_steps(workdir, half, (half + 6, STEPS))
  case.check(complete_steps(workdir) == [half], f"complete steps before {complete_steps(workdir)}")
  r = _restart_and_compare(case, workdir, ctx["reference"], half)
  logged = [
    n
    for n in planted
    if re.search(
      rf"Removing the incomplete checkpoint step \d+ at "
      rf"\S*/{re.escape(n)} ",
      r.output,
    )
  ]
  case.check(logged == planted, f"removal logged for {logged}")
  case.check(not leftovers(workdir), f"incomplete after restart {leftovers(workdir)}")
  return case


def case_sigterm_mid_run(root, ctx):
  half = STEPS // 2
  k = ctx["rng"].randrange(2, half)
  case = Case(
    "sigterm_mid_run",
    f"SIGTERM when iteration {k} is logged; rerun",
    "exit 0, latest checkpoint = step reached; restart continues, bit-identical",
  )
  workdir = os.path.join(root, "sigterm_mid_run")
  r = case.run(train_args(workdir), (metrics_line(k), signal.SIGTERM))
  stop = stopped_at(r)
  steps = complete_steps(workdir)
  case.check(r.proc.returncode == 0, f"exit {r.proc.returncode}")
  case.check(
    stop is not None and stop < STEPS and steps and steps[-1] == stop,
    f"stopped at step {stop}, checkpoints {steps}",
  )
  _restart_and_compare(case, workdir, ctx["reference"], stop)
  return case


def case_sigterm_during_startup(root, ctx):
  case = Case(
    "sigterm_during_startup",
    "SIGTERM when the parameter overview is logged (before the step is compiled and "
    "the loop starts); rerun",
    "exit 0 (nothing to save yet); restart trains from 0, bit-identical",
  )
  workdir = os.path.join(root, "sigterm_during_startup")
  r = case.run(train_args(workdir), (r"train_gan.py:\d+\] Critic parameters", signal.SIGTERM))
  case.check(
    r.proc.returncode == 0, f"exit {r.proc.returncode}, checkpoints {complete_steps(workdir)}"
  )
  _restart_and_compare(case, workdir, ctx["reference"], None)
  return case


def case_sigterm_in_pipeline(root, ctx):
  case = Case(
    "sigterm_in_pipeline",
    "--mode=pipeline, SIGTERM when GAN iteration 3 is logged",
    "exit 0 after the GAN checkpoint, without starting the encoder training",
  )
  workdir = os.path.join(root, "sigterm_in_pipeline")
  r = case.run(train_args(workdir, STEPS, "--mode=pipeline"), (metrics_line(3), signal.SIGTERM))
  case.check(r.proc.returncode == 0, f"exit {r.proc.returncode}")
  case.check(stopped_at(r) is not None, f"GAN stopped at step {stopped_at(r)}")
  encoder = r.find(r"Training the \w+ encoder")
  case.check(
    encoder is None,
    "encoder training " + ("started after the SIGTERM" if encoder else "not started"),
  )
  return case


CASES = {
  "straight": case_straight,
  "kill9_after_checkpoint": case_kill9_after_checkpoint,
  "kill9_early_in_save": case_kill9_early_in_save,
  "kill9_late_in_save": case_kill9_late_in_save,
  "planted_incomplete_steps": case_planted_incomplete_steps,
  "sigterm_mid_run": case_sigterm_mid_run,
  "sigterm_during_startup": case_sigterm_during_startup,
  "sigterm_in_pipeline": case_sigterm_in_pipeline,
}


def versions():
  from importlib import metadata  # pylint: disable=g-import-not-at-top

  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "orbax-checkpoint"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def print_table(results):
  rows = [("case", "pass", "s", "observed")] + [
    (r["case"], "PASS" if r["pass"] else "FAIL", f"{r['seconds']:.0f}", r["observed"])
    for r in results
  ]
  widths = [max(len(row[i]) for row in rows) for i in range(3)]
  for row in rows:
    print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--json", default=os.path.join(REPO, "benchmarks", "results", "fault_injection.json")
  )
  parser.add_argument("--seed", type=int, default=0, help="picks the iterations signalled")
  parser.add_argument("--cases", default=",".join(CASES))
  parser.add_argument("--keep", action="store_true", help="keep the run folders")
  args = parser.parse_args()
  names = args.cases.split(",")
  unknown = [n for n in names if n not in CASES]
  if unknown:
    parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
  if "straight" not in names:
    names.insert(0, "straight")  # The reference of every other case.

  # CPU, quiet TensorFlow, one persistent compilation cache shared by all the runs.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  root = tempfile.mkdtemp(prefix="fault_injection_")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(root, "jax_cache"))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

  ctx = {"rng": random.Random(args.seed)}
  results = []
  start = time.time()
  for name in names:
    print(f"--- {name}", flush=True)
    try:
      case = CASES[name](root, ctx)
    except Exception as e:  # pylint: disable=broad-except
      case = Case(name, "", "")
      case.check(False, f"harness error {type(e).__name__}: {e}")
    for r in case.runs:
      if r.proc.returncode not in (0, -signal.SIGKILL) or not case.ok:
        print(f"    [{r.proc.returncode}] {r.command}\n" + r.tail(8), flush=True)
    results.append(case.result())
    print(f"    {'PASS' if case.ok else 'FAIL'} {results[-1]['observed']}", flush=True)

  print()
  print_table(results)
  out = {
    "what": "kill -9 / SIGTERM / half-written checkpoints against python main.py; final "
    "training state compared bit for bit with an uninterrupted run (CPU)",
    "steps": STEPS,
    "checkpoint_every_steps": STEPS // 2,
    "seed": args.seed,
    "cases": results,
    "passed": sum(r["pass"] for r in results),
    "failed": sum(not r["pass"] for r in results),
    "total_seconds": round(time.time() - start, 1),
    "command": " ".join(
      ["python -m benchmarks.fault_injection"] + [shlex.quote(a) for a in sys.argv[1:]]
    ),
    "machine": machine(),
    "versions": versions(),
    "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
      f.write("\n")
    print(f"\nwrote {args.json}")
  if not args.keep:
    shutil.rmtree(root, ignore_errors=True)
  else:
    print(f"run folders kept in {root}")


if __name__ == "__main__":
  main()
