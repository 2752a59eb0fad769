"""errors.write_failure_reason: a failed write told from a bug, on a local disk and an object
store (the texts of tensorstore, TensorFlow's GCS client and gcsfs, as seen against a local GCS
server on 2026-12-07)."""

import errno

import pytest

from layered_gan_jax import errors


def _raised_from(cause: BaseException) -> BaseException:
  try:
    try:
      raise cause
    except BaseException as e:
      raise RuntimeError("Orbax: the save failed") from e
  except RuntimeError as wrapped:
    return wrapped


@pytest.mark.parametrize(
  "exc,reason",
  [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    (
      ValueError('RESOURCE_EXHAUSTED: Error writing "x": No space left on device'),
      "no space left on the device",
    ),
    (ValueError("PERMISSION_DENIED: [403] Forbidden"), "permission denied"),
    (OSError("Forbidden"), "permission denied"),
    (
      type("ServerDisconnectedError", (Exception,), {})("Server disconnected"),
      "the storage server cannot be reached",
    ),
    (
      RuntimeError(
        "Aborted: All 10 retry attempts failed: libcurl code 52 meaning 'Server "
        "returned nothing (no headers, no data)'"
      ),
      "the storage server cannot be reached",
    ),
  ],
)
def test_a_failed_write_has_its_reason_even_when_wrapped(exc, reason):
  assert errors.write_failure_reason(exc) == reason
  assert errors.write_failure_reason(_raised_from(exc)) == reason


@pytest.mark.parametrize(
  "exc",
  [
    KeyError("ema"),
    ValueError("shapes (3,) and (4,) differ"),
    TypeError("unsupported operand"),
    OSError(errno.ENOENT, "x"),
  ],
)
def test_a_bug_is_not_a_failed_write(exc):
  assert errors.write_failure_reason(exc) is None
  assert errors.write_failure_reason(_raised_from(exc)) is None
