"""The exceptions that end a command with a given exit status, in one place (imports nothing
but the standard library).

main.py maps each to one line on stderr and its exit status (README, "Exit statuses"):

====  ==========================  ======================================================
0     :class:`Preempted`          SIGTERM: a checkpoint was saved; the same command resumes
2     :class:`ConfigError`,       refused before any work (a bad flag, config, input, or a
      :class:`DataError`          second writer of a network): nothing was written
3     :class:`Collapsed`          ``train.stop_on_collapse``: the mask collapsed
4     :class:`NonFiniteLossError` a NaN / Inf loss or parameter: training stopped
5     :class:`WriteFailed`        a file could not be written (disk full, no permission, an
                                  object-store error); nothing complete was removed
====  ==========================  ======================================================
"""

import contextlib
import errno
import re
from typing import Iterator, Optional

EXIT_REFUSED = 2
EXIT_COLLAPSED = 3
EXIT_NON_FINITE = 4
EXIT_WRITE_FAILED = 5


class ConfigError(ValueError):
  """A user-fixable configuration problem."""


class DataError(ValueError):
  """A data file or folder cannot be used; the message names it and says what to do."""


class Collapsed(Exception):
  """Raised with ``train.stop_on_collapse`` once the mask has collapsed and a checkpoint of
  that step is saved (exit status 3)."""


class Preempted(Exception):
  """Raised after SIGTERM once a checkpoint is saved: the run stops here (exit status 0) and
  the same command resumes it."""


class NonFiniteLossError(FloatingPointError):
  """A logged metric or the parameters to be saved were NaN or Inf: training stopped; the last
  checkpoint is kept (exit status 4)."""


def last_good(step: Optional[int], directory) -> str:
  """How a stop names the checkpoint a rerun resumes from."""
  if step is None:
    return f"There is no checkpoint in {directory} yet; a rerun starts from the beginning"
  return f"The last good checkpoint is step {step} in {directory}; a rerun resumes from it"


class WriteFailed(OSError):
  """Something of the run could not be written. ``what`` names it (``"the checkpoint of step
  8"``, ``"an event file"``), ``where`` its path, ``reason`` the cause in a few words."""

  def __init__(self, what: str, where: str, reason: str):
    super().__init__(f"could not write {what} to {where}: {reason}")
    self.what, self.where, self.reason = what, where, reason


# The causes of a failed write, by errno and by the words the libraries use for them
# (tensorstore and Orbax re-raise OS errors as ValueError / RuntimeError with the C++ status
# text; object-store clients answer with HTTP statuses).
_ERRNO_REASONS = {
  errno.ENOSPC: "no space left on the device",
  errno.EDQUOT: "disk quota exceeded",
  errno.EFBIG: "file too large for this file system or the process's file-size limit",
  errno.EACCES: "permission denied",
  errno.EPERM: "operation not permitted",
  errno.EROFS: "read-only file system",
  errno.EIO: "input/output error of the device",
}
_TEXT_REASONS = (
  (
    r"no space left on device|RESOURCE_EXHAUSTED.*(space|disk)|ENOSPC",
    "no space left on the device",
  ),
  (r"disk quota exceeded|EDQUOT", "disk quota exceeded"),
  (r"file too large|EFBIG", _ERRNO_REASONS[errno.EFBIG]),
  (r"read-only file system|EROFS", "read-only file system"),
  (r"permission denied|PERMISSION_DENIED|\b403\b|access denied|forbidden", "permission denied"),
  (r"\b404\b.*bucket|bucket.*(does not exist|not found)|NoSuchBucket", "the bucket does not exist"),
  (r"input/output error|\bEIO\b", "input/output error of the device"),
  # The object store's server went away (gcsfs / aiohttp, TensorFlow's libcurl client).
  (
    r"ServerDisconnected|Cannot connect to host|Connection refused|libcurl code (7|52|56)\b",
    "the storage server cannot be reached",
  ),
)


def write_failure_reason(exc: BaseException) -> Optional[str]:
  """The cause, in a few words, if ``exc`` (or an exception it was raised from) is a failed
  write to a file system or an object store; ``None`` for anything else (a bug must keep its
  traceback)."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, WriteFailed):
      return exc.reason
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
      return _ERRNO_REASONS[exc.errno]
    text = f"{type(exc).__name__}: {exc}"
    for pattern, reason in _TEXT_REASONS:
      if re.search(pattern, text, re.IGNORECASE):
        return reason
    exc = exc.__cause__ or exc.__context__
  return None


@contextlib.contextmanager
def writing(what: str, where: str) -> Iterator[None]:
  """Raises :class:`WriteFailed` ``(what, where, reason)`` from a failed write inside the block
  (see :func:`write_failure_reason`); any other error, and a WriteFailed raised inside, pass
  unchanged."""
  try:
    yield
  except WriteFailed:
    raise
  except Exception as e:  # pylint: disable=broad-except
    reason = write_failure_reason(e)
    if reason is None:
      raise
    raise WriteFailed(what, where, reason) from e
