"""What a person watching a run reads: one progress line per log step, library chatter hidden.

Orbax logs some twenty INFO lines per checkpoint, clu a line per metric write and per
progress note, gcsfs a line per file read; :func:`quiet_library_logs` keeps only their warnings and errors, without the
tracebacks their worker threads log when a write fails (the command states the failure in one
line; ``python main.py --library_logs`` shows everything). TensorBoard still gets every
scalar.
"""

import logging as std_logging
import os
import sys
import tempfile
from typing import Dict, Optional, Tuple

from absl import logging

# asyncio: Orbax's own event loops; gcsfs / fsspec: etils' backend for gs:// without TensorFlow.
LIBRARY_PATHS = ("/orbax/", "/clu/", "/asyncio/", "/gcsfs/", "/fsspec/")


class _LibraryFilter(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    path = record.pathname.replace("\\", "/")
    if not any(p in path for p in LIBRARY_PATHS):
      return True
    # A library's traceback (a worker thread's failed write, say) reaches the command as an
    # exception, which main.py states in one line.
    return record.levelno >= std_logging.WARNING and not record.exc_info


_FILTER = _LibraryFilter()


def _echo_of_an_aborted_save(value) -> bool:
  """tensorstore's callbacks of an Orbax save that failed reach an event loop Orbax has closed
  and print this error from their threads (the failure itself is raised to the command)."""
  return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def _quiet_unraisablehook(unraisable):
  if not _echo_of_an_aborted_save(unraisable.exc_value):
    sys.__unraisablehook__(unraisable)


def quiet_library_logs(verbose: bool) -> None:
  """Hides the INFO and DEBUG records of Orbax and clu, and their worker threads' tracebacks
  (idempotent); ``verbose`` shows them."""
  handler = logging.get_absl_handler()
  handler.removeFilter(_FILTER)
  sys.unraisablehook = sys.__unraisablehook__ if verbose else _quiet_unraisablehook
  if not verbose:
    handler.addFilter(_FILTER)


def _duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_line(
  what: str,
  step: int,
  max_steps: int,
  values: Dict[str, float],
  images_per_s: float,
  seconds_per_step: float,
  eta: Optional[Tuple[float, bool]] = None,
) -> str:
  """``'<what> step 250/2500  critic -1.56  W 1.87  ...  64 img/s  ETA 5m12s'``.

  The ETA is the steps left x the latest step time, or ``eta`` = (seconds, scaled): the
  per-stage estimate of a progressive GAN, marked "(later stages FLOP-scaled)" while stages
  not yet measured are in it."""
  shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
  if eta is None:
    eta = ((max_steps - step) * seconds_per_step, False)
  note = " (later stages FLOP-scaled)" if eta[1] else ""
  return (
    f"{what} step {step}/{max_steps}  {shown}  {images_per_s:.0f} img/s  "
    f"ETA {_duration(eta[0])}{note}"
  )


# Lines that TensorFlow writes to stderr at import whatever TF_CPP_MIN_LOG_LEVEL says: no news
# for a user (oneDNN's numerics concern TensorFlow's own ops; the models run in JAX).
START_UP_NOISE = (
  b"All log messages before absl::InitializeLog() is called are written to STDERR",
  b"] oneDNN custom operations are on.",
)


class HeldStderr:
  """Holds everything written to stderr (file descriptor 2: Python's logs and the C++ logs of
  TensorFlow, XLA and libtpu) while a command is checked, so that a refusal prints one line
  whatever the libraries printed while starting.

  ``with HeldStderr(drop_on=(ConfigError,)):`` on leaving the block the held text is written
  to stderr, unless the block raised one of ``drop_on`` (the caller then prints its one line).
  The start-up banners of :data:`START_UP_NOISE` (TensorFlow's, written before its log level
  applies) are dropped in any case, so that a later refusal or stop is one line as well.
  """

  def __init__(self, drop_on=()):
    self._drop_on = tuple(drop_on)
    self._saved_fd = None
    self._held = None

  def __enter__(self) -> "HeldStderr":
    sys.stderr.flush()
    self._held = tempfile.TemporaryFile()
    self._saved_fd = os.dup(2)
    os.dup2(self._held.fileno(), 2)
    return self

  def __exit__(self, exc_type, exc, tb):
    sys.stderr.flush()
    os.dup2(self._saved_fd, 2)
    os.close(self._saved_fd)
    if exc_type is None or not issubclass(exc_type, self._drop_on):
      self._held.seek(0)
      held = b"".join(
        line
        for line in self._held.readlines()
        if not any(noise in line for noise in START_UP_NOISE)
      )
      if hasattr(sys.stderr, "buffer"):
        sys.stderr.buffer.write(held)
      else:
        sys.stderr.write(held.decode(errors="replace"))
      sys.stderr.flush()
    self._held.close()
    return False
