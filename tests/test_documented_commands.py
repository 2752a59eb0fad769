"""Every benchmark entry point that README.md and docs/ give runs as written, in its smallest
form, from the repository root, so that moving or renaming a module cannot break them unseen.

Entry points that need what CI does not have (the official code and a torch venv, a trained GAN,
minutes of training) run with ``--help``, which still imports the module as ``python -m`` does;
``benchmarks.compare_reference`` runs whole, with the smallest model of ours (slow: half a
minute, most of it one compile) and, on the official side, the project's own driver
(``benchmarks/official_code.py``, ``official_timing.py``) loading a stand-in for the official
repository from a git mirror under a stand-in torch; the rest takes a few seconds.
"""

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))

# Each documented `python -m MODULE`, with the arguments of its smallest run (relative paths from
# the repository root; {tmp} is the test's temporary folder).
SMALLEST = {
  "benchmarks.dataset_baselines": [
    "--resolution=32",
    "--num_examples=4",
    "--json={tmp}/baselines.json",
  ],
  "benchmarks.input_pipeline": [
    "--resolution=16",
    "--batch=4",
    "--steps=2",
    "--warmup=1",
    "--synthetic_examples=16",
    "--folder_images=8",
    "--json={tmp}/pipeline.json",
  ],
  "benchmarks.emergence": ["--quick", "--dry_run"],
  # Its real run lowers car.py's training step at 64 and 128 px: half a minute here.
  "benchmarks.device.gpu_summary": ["--help"],
  # With the TensorFlow stand-in: test_no_tf_launch_runs_a_module below.
  "benchmarks.device.no_tf_launch": ["-m", "benchmarks.input_pipeline", "--help"],
  # Run whole by test_emergence_smoke.py (slow) and below (compare_reference -> throughput).
  "benchmarks.device.scale": ["--help"],
  "benchmarks.throughput": ["--help"],
  "benchmarks.compare_reference": ["--help"],
  # Need the official code and a torch venv (run on stand-ins for both below).
  "benchmarks.official_parity": ["--help"],
  "benchmarks.official_timing": ["--help"],
  "benchmarks.device.ref_bench_cuda": ["--help"],
  # Need a trained GAN, or minutes of training.
  "benchmarks.encoder_choices": ["--help"],
  "benchmarks.segmenter_choices": ["--help"],
  "benchmarks.fault_injection": ["--help"],
  # The FID network on hundreds of images (minutes); the reference needs a torch venv.
  "benchmarks.fid_floor": ["--help"],
  "benchmarks.fid_reference": ["--help"],
  # Trains a progressive run for minutes.
  "benchmarks.eta": ["--help"],
  # The README's main job, timed: a quarter of an hour on two cores.
  "benchmarks.main_job": ["--help"],
  # Compiles the step and its parts twice (45 s on configs/tiny.py; minutes on car.py).
  "benchmarks.step_memory": ["--help"],
  # Trains configs/tiny.py a dozen times (3 minutes); its cases run in test_reliability.py.
  "benchmarks.run_folder_faults": ["--help"],
  # Saves car.py's initial state (1.1 GB) several times.
  "benchmarks.checkpoint_hashing": ["--help"],
  # Saves car.py's state (1.1 GB) on a local disk and on a GCS server, four times each.
  "benchmarks.bucket_save": ["--help"],
  # Compiles and trains four times (a minute on configs/tiny.py).
  "benchmarks.loop_overhead": ["--help"],
  "benchmarks.refusal_table": ["--cases=workdir is a file"],
}
SUBCOMMANDS = {
  "benchmarks.official_parity": ("fixture", "behaviour", "faults"),
  "benchmarks.device.scale": ("drive", "summarize"),
}


def _documented_modules():
  found = set()
  for path in DOCS:
    with open(path) as f:
      found.update(re.findall(r"python3? -m (benchmarks(?:\.\w+)+)", f.read()))
  return found


def test_every_documented_benchmark_has_a_smallest_form():
  documented = _documented_modules()
  assert "benchmarks.throughput" in documented and "benchmarks.compare_reference" in documented
  assert not documented - set(SMALLEST), (
    f"documented but not run by this test: {sorted(documented - set(SMALLEST))}"
  )


def test_modules_that_scripts_launch_exist():
  """The `-m MODULE` of every shell script and of every benchmark's subprocess command."""
  launched = set()
  for path in glob.glob(os.path.join(REPO, "benchmarks", "**", "*.sh"), recursive=True):
    with open(path) as f:
      launched.update(re.findall(r"-m (benchmarks(?:\.\w+)+)", f.read()))
    assert subprocess.run(["bash", "-n", path]).returncode == 0, path
  for path in glob.glob(os.path.join(REPO, "benchmarks", "**", "*.py"), recursive=True):
    with open(path) as f:
      launched.update(re.findall(r"\"-m\", \"(benchmarks(?:\.\w+)+)\"", f.read()))
  assert {
    "benchmarks.throughput",
    "benchmarks.emergence",
    "benchmarks.device.no_tf_launch",
  } <= launched
  sys.path.insert(0, REPO)
  try:
    missing = [m for m in sorted(launched) if importlib.util.find_spec(m) is None]
  finally:
    sys.path.remove(REPO)
  assert not missing


def _run(args, tmp_path, timeout=300):
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  proc = subprocess.run(
    [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
  )
  assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
  return proc


@pytest.mark.parametrize("module", sorted(SMALLEST))
def test_documented_benchmark_runs(module, tmp_path):
  _run([module] + SMALLEST[module], tmp_path)
  for sub in SUBCOMMANDS.get(module, ()):
    _run([module, sub, "--help"], tmp_path)


# A stand-in for the official repository, the files benchmarks/official_code.py loads: pure
# Python, no torch. Its train.train() keeps the official loop's outline (one critic and one
# generator Adam step, the EMA update and one logged dict per iteration, the progress bar's
# description) and fails if the sample-image pass runs; utils.py and data.py import what the
# official ones do, most of it absent here.
_FAKE_OFFICIAL = {
  "stylegan.py": """
class Param:
  def __init__(self, value):
    self.value = value
  def numel(self):
    return 1
  def detach(self):
    return self
  def clone(self):
    return Param(self.value)

class Net:
  def __init__(self, *names):
    self.params = {n: Param(0.0) for n in names}
  def named_parameters(self):
    return iter(self.params.items())
  def parameters(self):
    return iter(self.params.values())
  def to(self, device):
    return self
  def train(self, mode=True):
    return self

class Discriminator(Net):
  def __init__(self, in_channels=3):
    super().__init__("from_rgb", "linear")
""",
  "model.py": """
from stylegan import Net

class BgFgMask(Net):
  def __init__(self, code_dim=512, n_mlp=8):
    super().__init__("style", "synthesis")
  def parameter_groups(self):
    return {"generator": [self.params["synthesis"]], "style": [self.params["style"]]}
""",
  "perturber_utils.py": "def shift(x, shifts):\n  return x\n",
  "perturber.py": """
from perturber_utils import shift

class RandomShift:
  def __init__(self, location_noise_fn):
    self.location_noise_fn = location_noise_fn

class BgContrastJitter:
  def __init__(self, strength):
    self.strength = strength

class CompositePerturber:
  def __init__(self, *perturbers):
    self.perturbers = perturbers
""",
  "renderer.py": """
class LayeredRenderer:
  pass

class ModelWrapper:
  def __init__(self, generator, perturber, renderer):
    self.generator, self.perturber, self.renderer = generator, perturber, renderer
""",
  "loss.py": """
class MaskLoss:
  def __init__(self, min_coverage, mask_alpha, binarization_alpha):
    self.min_coverage = min_coverage
""",
  "utils.py": """
import torchvision.datasets as dset
import six
import lmdb
from PIL import Image
from mlflow import log_artifact, log_metric
from torchvision.utils import make_grid
""",
  "data.py": """
from torchvision import datasets, transforms

def sample_data(*args, **kwargs):
  raise AssertionError("the official data loader was called")
""",
  "train.py": """
from tqdm import tqdm
from data import sample_data
from utils import make_grid

def accumulate(model1, model2, decay=0.999):
  for (_, p1), (_, p2) in zip(model1.named_parameters(), model2.named_parameters()):
    p1.value = decay * p1.value + (1 - decay) * p2.value

def train(args, dataset, generator, g_running, discriminator, mask_loss_fn, logger, log_dir,
          step=None, gen_every=100):
  resolution = args.init_size
  data_loader = iter(sample_data(dataset, args.batch[resolution], resolution))
  pbar = tqdm(range(3_000_000))
  for i in pbar:
    real_image, label = next(data_loader)
    d_optimizer.step()
    for p in generator.module.generator.parameters():
      p.value += 1.0
    g_optimizer.step()
    accumulate(g_running.generator, generator.module.generator)
    logger.log_metrics({"lossD": float(i)}, i)
    if i % gen_every == 0:
      raise AssertionError("the sample-image pass ran")
    pbar.set_description(f"Size: {resolution}; on {device}, code {code_size}")
""",
}

# torch as far as benchmarks/official_timing.py calls it, for the stand-in official code above
# (a module, not a package: torch.utils.tensorboard is then absent, as in a bare torch venv).
_FAKE_TORCH = """
import random
import types

__version__ = "0.0+stand-in"
_threads = [1]

def set_num_threads(n):
  _threads[0] = n

def get_num_threads():
  return _threads[0]

def manual_seed(seed):
  random.seed(seed)

def device(name):
  return name

class _Array:
  def __mul__(self, other):
    return self
  __rmul__ = __mul__
  def __sub__(self, other):
    return self
  def __matmul__(self, other):
    return self

class Generator:
  def manual_seed(self, seed):
    return self

def rand(*shape, generator=None, device=None):
  return _Array()

def randn(*shape):
  return _Array()

def equal(a, b):
  return a.value == b.value

class _DataParallel:
  def __init__(self, module):
    self.module = module
  def to(self, device):
    return self

class _Adam:
  def __init__(self, params, lr, betas):
    self.param_groups = [{"params": list(params), "lr": lr}]
  def add_param_group(self, group):
    self.param_groups.append(group)
  def step(self):
    pass

nn = types.SimpleNamespace(DataParallel=_DataParallel)
optim = types.SimpleNamespace(Adam=_Adam)
cuda = types.SimpleNamespace(
  synchronize=lambda: None, is_available=lambda: True, max_memory_allocated=lambda: 1234
)
"""

_GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
_GIT += ["-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false"]


def _official_copies(tmp_path, files=None):
  """A checkout of the stand-in official repository (one commit) and a bare mirror of it."""
  checkout, mirror = tmp_path / "perturbed-seg", tmp_path / "perturbed-seg.git"
  checkout.mkdir()
  for name, text in (files or _FAKE_OFFICIAL).items():
    (checkout / name).write_text(text)
  for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "official"]):
    subprocess.run(_GIT + args, cwd=checkout, check=True)
  subprocess.run(_GIT + ["clone", "-q", "--bare", str(checkout), str(mirror)], check=True)
  commit = subprocess.run(
    ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
  ).stdout.strip()
  return checkout, mirror, commit


def _fake_torch_python(tmp_path):
  """A 'python of a PyTorch environment' whose torch is _FAKE_TORCH."""
  site = tmp_path / "fake_torch"
  site.mkdir()
  (site / "torch.py").write_text(_FAKE_TORCH)
  python = tmp_path / "torch_python"
  python.write_text(
    f'#!/bin/sh\nPYTHONPATH="{site}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n'
  )
  python.chmod(0o755)
  return str(python)


def _python_without_torch(tmp_path):
  python = tmp_path / "python_without_torch"
  python.write_text(
    "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n"
  )
  python.chmod(0o755)
  return str(python)


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_official_code_loads_the_official_modules_from_a_mirror_or_a_checkout(tmp_path):
  from benchmarks import official_code  # pylint: disable=import-outside-toplevel

  checkout, mirror, commit = _official_copies(tmp_path)
  for path, kind in ((mirror, "git"), (checkout / ".git", "git"), (checkout, "checkout")):
    with official_code.load(str(path)) as official:
      assert (official.source.kind, official.commit) == (kind, commit)
      folder = official.folder
      for name in official_code.MODULES:
        assert official[name] is sys.modules[name]
        assert os.path.dirname(official[name].__file__) == folder
      absent = [
        p for p in ("torchvision", "mlflow") if importlib.util.find_spec(p) is None
      ]  # never installed with this project
      assert set(absent) <= set(official.stand_ins) <= set(official_code.UNUSED_PACKAGES)
      if "torchvision" in official.stand_ins:
        with pytest.raises(RuntimeError, match="torchvision is not installed"):
          official["utils"].make_grid([])
    assert not os.path.exists(folder)
    assert not set(official_code.MODULES) & set(sys.modules)
    assert not any(isinstance(m, official_code._StandInModule) for m in sys.modules.values())
  # A checkout's working tree is what loads, and its edits are said.
  (checkout / "loss.py").write_text(_FAKE_OFFICIAL["loss.py"] + "EDITED = True\n")
  with official_code.load(str(checkout)) as official:
    assert official["loss"].EDITED and official.commit == commit + "+local changes"


@needs_git
def test_official_code_refuses_what_is_not_the_official_code_in_one_line(tmp_path):
  from benchmarks import official_code  # pylint: disable=import-outside-toplevel

  files = {k: v for k, v in _FAKE_OFFICIAL.items() if k != "renderer.py"}
  checkout, mirror, _ = _official_copies(tmp_path, files)
  (tmp_path / "empty").mkdir()
  cases = {
    str(tmp_path / "nope"): "is not a directory",
    str(tmp_path / "empty"): "neither a checkout of adambielski/perturbed-seg",
    str(checkout): "lacks renderer.py",
    str(mirror): "lacks renderer.py",
  }
  for path, message in cases.items():
    with pytest.raises(official_code.SourceError, match=message) as e:
      official_code.locate(path)
    assert "\n" not in str(e.value)
  with pytest.raises(official_code.SourceError, match="cannot import torch"):
    official_code.check_torch_python(_python_without_torch(tmp_path))


@needs_git
def test_official_timing_drives_the_official_loop(tmp_path):
  """benchmarks.official_timing under a 'torch python', as compare_reference runs it, on the
  stand-in official code: the iterations run through the official train.train(), are timed and
  checked; on CUDA (device/ref_bench_cuda) the allocator's peak follows."""
  _, mirror, commit = _official_copies(tmp_path)
  python = _fake_torch_python(tmp_path)
  args = [f"--mirror={mirror}", "--resolution=8", "--batch=2", "--steps=2", "--warmup=1"]
  proc = subprocess.run(
    [python, "-m", "benchmarks.official_timing", *args, "--gemm"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  out = proc.stdout
  assert f"official code {commit} (git {mirror})" in out and "torch.utils.tensorboard" in out
  assert "gemm fp32 2048 x 2048" in out
  assert "warm-up 1/1" in out and "timed 2/2" in out and "| Size: 8; on cpu, code 512" in out
  assert "(3, 3, 3, 3) (expected 3 each), EMA moved True" in out
  assert re.fullmatch(
    r"ref_img_per_s=[0-9.]+ resolution=8 batch=2 median_step_s=[0-9.]+", out.splitlines()[-1]
  )
  proc = subprocess.run(
    [python, "-m", "benchmarks.device.ref_bench_cuda", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "on cuda:0, code 512" in proc.stdout
  assert proc.stdout.splitlines()[-1].startswith("official_peak_bytes 1234 ")


@needs_git
@pytest.mark.slow
def test_compare_reference_runs_ours_as_a_module_on_the_documented_config(tmp_path, monkeypatch):
  """The documented command, on stand-ins for the official code and its torch (theirs is
  benchmarks.official_timing, run whole): ours is `python -m benchmarks.throughput
  --config=configs/car.py` from the repository root, which must run though LSUN is not prepared
  here (synthetic batches of car.py's shape, said in a line). Only our model is made tiny, by
  arguments added to the command compare_reference built."""
  from benchmarks import compare_reference  # pylint: disable=import-outside-toplevel

  _, mirror, _ = _official_copies(tmp_path)
  out = tmp_path / "compare.json"
  real_run, ours = subprocess.run, []

  def run(cmd, **kwargs):
    if "benchmarks.throughput" not in cmd:
      return real_run(cmd, **kwargs)
    assert cmd[1:3] == ["-m", "benchmarks.throughput"] and kwargs["cwd"] == REPO
    cmd = cmd + [
      "--config.model.channels=(8,8,8)",
      "--config.data.data_dir=" + str(tmp_path),
      "--matmul_size=64",
      "--matmul_reps=1",
      "--pipeline_batches=1",
      "--pipeline_warmup=0",
      "--distinct_batches=1",
    ]
    proc = real_run(cmd, **dict(kwargs, check=False, capture_output=True, text=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours.append(proc.stdout)
    return proc

  monkeypatch.setattr(compare_reference.subprocess, "run", run)
  monkeypatch.setattr(
    sys,
    "argv",
    [
      "compare_reference",
      f"--mirror={mirror}",
      f"--torch_python={_fake_torch_python(tmp_path)}",
      "--setting=16:2",
      "--steps=1",
      "--warmup=0",
      f"--json={out}",
    ],
  )
  compare_reference.main()
  assert len(ours) == 1
  assert "data: lsun/car is not available offline" in ours[0]
  assert "fell back to the synthetic dataset" in ours[0]
  (row,) = json.loads(out.read_text())["results"]
  assert (row["resolution"], row["batch"]) == (16, 2)
  assert row["theirs_command"].startswith("-m benchmarks.official_timing --mirror=")
  assert row["theirs_images_per_s"] > 0 and row["theirs"]["gemm_lines"]
  assert row["ratio_ours_over_theirs"] == pytest.approx(
    row["ours_images_per_s"] / row["theirs_images_per_s"]
  )
  assert row["ours_images_per_s"] > 0
  assert row["ours_command"].startswith("-m benchmarks.throughput --config=configs/car.py")


def _refusal(args, tmp_path):
  proc = subprocess.run(
    [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=60
  )
  assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  return lines[0]


@needs_git
def test_the_official_code_commands_refuse_missing_inputs_in_one_line(tmp_path):
  """compare_reference, official_parity and the drivers they start: a missing copy of the
  official code or a python without torch is said in one line (exit status 2) before any work."""
  _, mirror, _ = _official_copies(tmp_path)
  nope, no_torch = str(tmp_path / "nope"), _python_without_torch(tmp_path)
  json_out = f"--json={tmp_path}/x.json"
  compare = ["benchmarks.compare_reference", json_out]
  parity = ["benchmarks.official_parity", "fixture", f"--out={tmp_path}/x.npz", json_out]
  for command in (compare, parity):
    line = _refusal(command + [f"--mirror={nope}", f"--torch_python={no_torch}"], tmp_path)
    assert line.startswith(f"error: --mirror: {nope} is not a directory")
    line = _refusal(command + [f"--mirror={mirror}", f"--torch_python={no_torch}"], tmp_path)
    assert line.startswith(f"error: --torch_python: {no_torch} cannot import torch")
  spec = ["--spec=x.json", "--out=x.npz"]
  for command in (
    ["benchmarks.official_timing", f"--mirror={nope}"],
    ["benchmarks.official_driver", "--mode=fixture", f"--mirror={nope}", *spec],
  ):
    assert _refusal(command, tmp_path).startswith(f"error: --mirror: {nope} is not a directory")


@needs_git
def test_official_parity_starts_the_project_driver(tmp_path, monkeypatch):
  """official_parity's runs of the official code: `python -m benchmarks.official_driver` under
  the torch python, this repository on its path, no file from outside the repository."""
  from benchmarks import official_common  # pylint: disable=import-outside-toplevel

  _, mirror, _ = _official_copies(tmp_path)
  args = types.SimpleNamespace(mirror=str(mirror), torch_python=_fake_torch_python(tmp_path))
  real_run, calls = subprocess.run, []

  def run(cmd, **kwargs):  # the checks of git and torch run; the driver is only recorded
    if "benchmarks.official_driver" not in cmd:
      return real_run(cmd, **kwargs)
    calls.append((cmd, kwargs))

  monkeypatch.setattr(official_common.subprocess, "run", run)
  official_common.run_driver(args, "fixture", {"seed": 0}, str(tmp_path / "o.npz"))
  ((cmd, kwargs),) = calls
  assert cmd[:4] == [args.torch_python, "-m", "benchmarks.official_driver", "--mode=fixture"]
  assert cmd[4] == f"--mirror={mirror}" and cmd[6] == f"--out={tmp_path / 'o.npz'}"
  assert kwargs["env"]["PYTHONPATH"].split(os.pathsep)[0] == REPO


def test_no_tf_launch_runs_a_module(tmp_path):
  """benchmarks/device/no_tf_launch.py -m MODULE, as the GPU scripts call it, with the
  TensorFlow stand-in forced: the module gets its own arguments."""
  env = dict(os.environ, FORCE_TF_STUB="1")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.device.no_tf_launch",
      "-m",
      "benchmarks.dataset_baselines",
      "--resolution=32",
      "--num_examples=4",
      f"--json={tmp_path}/baselines.json",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "TensorFlow stand-in" in proc.stdout
  assert json.loads((tmp_path / "baselines.json").read_text())["num_examples"] == 4
