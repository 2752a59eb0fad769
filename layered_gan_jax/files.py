"""Files written whole or not at all: a temporary file next to the target, then a rename, so a
kill never leaves half a file where a reader looks."""

import contextlib
import json
import os
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
  """Yields a temporary path next to ``path`` (``path + suffix``; makes the folder); when the
  block ends without an exception the file is renamed onto ``path``, otherwise removed."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + suffix
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj: Any, indent: int = 2) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=indent)
