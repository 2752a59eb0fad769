"""``ram://`` paths for etils.epath: TensorFlow's in-memory file system, served by the same
``tf.io.gfile`` backend that epath uses for ``gs://`` (so no network is needed to test a
workdir on an object store).

etils registers its URI classes through the public ``epath.register_path_cls(prefix)``, used
here. Its cloud path class (``etils.epath.gpath.PosixGPath``) knows its schemes from a private
constant, so the class registered for ``ram://`` subclasses it and overrides the private
``_uri_scheme`` / ``_backend`` / ``__new__`` parsing; nothing of etils is patched in place.
"""

import os
import posixpath

from etils import epath
from etils.epath import backend as backend_lib
from etils.epath import gpath

PREFIX = "ram://"


@epath.register_path_cls(PREFIX)
class RamPath(gpath.PosixGPath):
  """``ram://a/b`` as an epath.Path on tf.io.gfile's RamFileSystem."""

  _PATH = posixpath

  def __new__(cls, *parts):
    full = "/".join(os.fspath(p) for p in parts)
    if full.startswith(PREFIX):
      parts = ("/ram/" + full[len(PREFIX) :],)
    return super().__new__(cls, *parts)

  @property
  def _uri_scheme(self):
    return "ram" if len(self.parts) >= 2 and self.parts[:2] == ("/", "ram") else None

  @property
  def _backend(self):
    return backend_lib.tf_backend if self._uri_scheme else backend_lib.os_backend


def listing(root: str, depth: int = 4):
  """Every file under ``root`` (a ram:// folder) up to ``depth`` levels down, relative, sorted.
  (RamFileSystem lists only the folders made explicitly, so this globs level by level.)"""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  out = set()
  for level in range(1, depth + 1):
    for path in tf.io.gfile.glob(root.rstrip("/") + "/*" * level):
      if not tf.io.gfile.isdir(path):
        out.add(path[len(root) :].lstrip("/"))
  return sorted(out)
