"""The official PyTorch code of the paper (github.com/adambielski/perturbed-seg), loaded from a
copy of its repository and driven from here: the one module of this project that touches it.

Nothing of the official code is stored in this project, and none of it is edited. ``load``
reads its .py files from a git directory (a bare mirror, or a clone's ``.git``) at a revision,
or from a checkout's working tree, writes them to a fresh temporary folder and imports them from
there under their own names (``stylegan``, ``model``, ``train``, ...).

Contract:
  * ``locate(path, rev)`` -> ``Source`` (its kind, ``git`` or ``checkout``, and commit) and
    ``load(path, rev)`` -> ``Official`` (``modules``: name -> module, ``commit``, ``stand_ins``:
    the packages replaced) raise ``SourceError``, one line saying what to do, for a path that
    is not a copy of the official repository. ``Official`` is a context manager; closing it
    deletes the folder and forgets the modules and stand-ins. One ``Official`` at a time per
    process (the official modules' names are global).
  * Packages that the official modules import when loaded but that training never calls (tqdm,
    PIL, six, lmdb, mlflow, torchvision, torch.utils.tensorboard) become stand-ins where they
    are not installed; calling anything of a stand-in raises ``RuntimeError`` naming it.
  * ``run_train`` makes one call of the official ``train.train()`` with the module globals its
    ``__main__`` block would have set, and with stand-ins for the data loader (``Batches``), the
    progress bar (``Progress``: a fixed number of iterations, optionally timed), the logger
    (``MetricsLog``) and checkpoints (none written); the sample-image pass never runs.
Its users: ``official_timing.py`` (the official iteration timed, for ``compare_reference.py``)
and ``official_driver.py`` (the official numbers for ``official_parity.py``).
Runs in a PyTorch environment (``python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install
torch numpy``) and needs nothing of this project's package: it imports only the standard
library, so ``locate`` and ``check_torch_python`` work in this project's own environment too
(the official modules themselves import torch when loaded).
"""

import argparse
import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import os
import shutil
import subprocess
import sys
import tempfile
import types
from typing import Callable, Dict, List, Optional

REPOSITORY = "https://github.com/adambielski/perturbed-seg"
# The official modules, in an order in which each one's imports are already loaded.
MODULES = ("stylegan", "model", "perturber_utils", "perturber", "renderer", "loss", "utils")
MODULES += ("data", "train")
# Imported by the official modules when they load; never called by the training iteration.
UNUSED_PACKAGES = ("tqdm", "PIL", "six", "lmdb", "mlflow", "torchvision", "torch.utils.tensorboard")
FETCH_HINT = f"git clone --mirror {REPOSITORY}"


class SourceError(Exception):
  """A path that is not a usable copy of the official repository (the message is one line)."""


# ------------------------------------------------------------------------------ the source


@dataclasses.dataclass(frozen=True)
class Source:
  path: str
  kind: str  # "git": a git directory read at a revision; "checkout": a working tree as it is
  commit: str  # for a checkout with edits to the official files: "<commit>+local changes"


def _git(args, what) -> str:
  try:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
  except FileNotFoundError:
    raise SourceError(f"git is not installed; it reads {what}") from None
  if proc.returncode != 0:
    detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise SourceError(f"git could not read {what}: {detail}")
  return proc.stdout


def locate(path: str, rev: str = "HEAD") -> Source:
  """Which kind of copy ``path`` is, and its commit; every official file must be there."""
  if not path or not os.path.isdir(path):
    raise SourceError(
      f"{path or '(empty)'} is not a directory; give a git directory or a checkout of "
      f"adambielski/perturbed-seg ({FETCH_HINT})"
    )
  path = os.path.abspath(path)
  if os.path.isfile(os.path.join(path, "train.py")):
    missing = [m for m in MODULES if not os.path.isfile(os.path.join(path, m + ".py"))]
    if missing:
      raise SourceError(f"{path} lacks {', '.join(missing)}.py: not adambielski/perturbed-seg")
    try:
      commit = _git(["-C", path, "rev-parse", "HEAD"], path).strip()
      files = [m + ".py" for m in MODULES]
      edited = _git(["-C", path, "status", "--porcelain", "--", *files], path).strip()
    except SourceError:
      return Source(path, "checkout", "unknown (not a git checkout)")
    return Source(path, "checkout", commit + ("+local changes" if edited else ""))
  try:
    commit = _git(["--git-dir", path, "rev-parse", "--verify", f"{rev}^{{commit}}"], path)
  except SourceError as e:
    raise SourceError(
      f"{path} is neither a checkout of adambielski/perturbed-seg (no train.py) nor a git "
      f"directory with a commit {rev} ({e}); fetch one with {FETCH_HINT}"
    ) from None
  commit = commit.strip()
  listed = set(_git(["--git-dir", path, "ls-tree", "--name-only", commit], path).split())
  missing = [m for m in MODULES if m + ".py" not in listed]
  if missing:
    raise SourceError(
      f"{path} at {commit[:12]} lacks {', '.join(missing)}.py: not adambielski/perturbed-seg"
    )
  return Source(path, "git", commit)


def _copy_files(source: Source, folder: str):
  for name in MODULES:
    target = os.path.join(folder, name + ".py")
    if source.kind == "checkout":
      shutil.copyfile(os.path.join(source.path, name + ".py"), target)
      continue
    commit = source.commit
    blob = subprocess.run(
      ["git", "--git-dir", source.path, "cat-file", "blob", f"{commit}:{name}.py"],
      capture_output=True,
      check=True,
    ).stdout
    with open(target, "wb") as f:
      f.write(blob)


# ------------------------------------------------------------------------------ stand-ins


class _Unusable:
  """What any attribute of a stand-in package is: calling it (or making one) raises."""

  def __init__(self, name):
    self._name = name

  def __call__(self, *args, **kwargs):
    package = self._name.split(".")[0]
    raise RuntimeError(
      f"{self._name} was called, but {package} is not installed here (a stand-in took its "
      "place because the official training iteration does not use it)"
    )

  def __getattr__(self, attr):
    if attr.startswith("__"):
      raise AttributeError(attr)
    return _Unusable(f"{self._name}.{attr}")


class _StandInModule(types.ModuleType):
  def __getattr__(self, attr):
    if attr.startswith("__"):
      raise AttributeError(attr)
    return _Unusable(f"{self.__name__}.{attr}")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Answers imports of the absent packages (and of anything under them) with stand-ins."""

  def __init__(self, packages):
    self.packages = tuple(packages)

  def find_spec(self, fullname, path=None, target=None):
    if any(fullname == p or fullname.startswith(p + ".") for p in self.packages):
      return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
    return None

  def create_module(self, spec):
    return _StandInModule(spec.name)

  def exec_module(self, module):
    pass


def _absent(packages) -> List[str]:
  absent = []
  for name in packages:
    try:
      importlib.import_module(name)
    except ImportError:
      absent.append(name)
  return absent


# ------------------------------------------------------------------------------ loading


class Official:
  """The official modules, imported from a temporary copy of their files (see ``load``)."""

  def __init__(self, source: Source):
    self.source, self.commit = source, source.commit
    taken = [m for m in MODULES if m in sys.modules]
    if taken:
      where = getattr(sys.modules[taken[0]], "__file__", None) or "built in"
      raise RuntimeError(
        f"a module named {taken[0]!r} is already imported ({where}); the official modules "
        "need their own names: load them in a fresh process"
      )
    self.folder = tempfile.mkdtemp(prefix="perturbed_seg_")
    self.modules: Dict[str, types.ModuleType] = {}
    self._finder = None
    try:
      _copy_files(source, self.folder)
      self.stand_ins = _absent(UNUSED_PACKAGES)
      if self.stand_ins:
        self._finder = _StandInFinder(self.stand_ins)
        sys.meta_path.insert(0, self._finder)
      sys.path.insert(0, self.folder)
      importlib.invalidate_caches()
      for name in MODULES:
        module = importlib.import_module(name)
        origin = os.path.dirname(os.path.abspath(module.__file__))
        if origin != self.folder:
          raise RuntimeError(f"{name} was imported from {origin}, not from {self.folder}")
        self.modules[name] = module
    except BaseException:
      self.close()
      raise

  def __getitem__(self, name):
    return self.modules[name]

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False

  def close(self):
    """Forgets the official modules and the stand-ins, and deletes the copied files."""
    for name in MODULES:
      module = sys.modules.get(name)
      if module is not None and (getattr(module, "__file__", None) or "").startswith(self.folder):
        del sys.modules[name]
    for name in [n for n, m in sys.modules.items() if isinstance(m, _StandInModule)]:
      del sys.modules[name]
      parent, _, child = name.rpartition(".")
      if parent in sys.modules and isinstance(
        getattr(sys.modules[parent], child, None), _StandInModule
      ):
        delattr(sys.modules[parent], child)
    if self._finder in sys.meta_path:
      sys.meta_path.remove(self._finder)
    if self.folder in sys.path:
      sys.path.remove(self.folder)
    shutil.rmtree(self.folder, ignore_errors=True)


def load(path: str, rev: str = "HEAD") -> Official:
  """The official modules from the git directory or checkout ``path`` (see the module doc)."""
  return Official(locate(path, rev))


def check_torch_python(torch_python: str):
  """Raises ``SourceError`` unless ``torch_python`` is a python that imports torch."""
  hint = "the python of a PyTorch environment (python3 -m venv ... && pip install torch numpy)"
  if not torch_python or not os.path.isfile(torch_python):
    raise SourceError(f"{torch_python or '(empty)'} is not a file; give {hint}")
  proc = subprocess.run([torch_python, "-c", "import torch"], capture_output=True, text=True)
  if proc.returncode != 0:
    detail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise SourceError(f"{torch_python} cannot import torch ({detail}); give {hint}")


# ------------------------------------------------------------------------------ train.train()


class Progress:
  """Stands in for ``tqdm(range(3_000_000))`` in ``train.train()``: ``count`` iterations.

  With a ``clock``, ``marks[i]`` is when iteration ``i`` began and ``marks[count]`` when the last
  ended (``sync`` runs before each reading, e.g. to drain a GPU's queue), and ``on_iteration(i,
  seconds, description)`` is called as each iteration ends."""

  def __init__(self, count: int, clock=None, sync=None, on_iteration=None):
    self.count, self.clock, self.sync, self.on_iteration = count, clock, sync, on_iteration
    self.marks: List[float] = []
    self.description = ""

  def set_description(self, text):
    self.description = text

  def _mark(self):
    if self.clock is None:
      return
    if self.sync is not None:
      self.sync()
    self.marks.append(self.clock())
    if len(self.marks) > 1 and self.on_iteration is not None:
      i = len(self.marks) - 2
      self.on_iteration(i, self.marks[i + 1] - self.marks[i], self.description)

  def __iter__(self):
    for i in range(self.count):
      self._mark()
      yield i
    self._mark()


class Batches:
  """Stands in for the loader of ``data.sample_data``: ``(batch(i), None)`` for i = 0 .. count - 1,
  over and over; every ``iter`` starts at 0 (``train.train()`` reads its first 64 images for
  logging through one iterator, then trains from a fresh one)."""

  def __init__(self, batch: Callable[[int], object], count: int):
    self.batch, self.count = batch, count

  def __iter__(self):
    while True:
      for i in range(self.count):
        yield self.batch(i), None


class MetricsLog:
  """``train.train()``'s logger: ``metrics`` holds each iteration's dict; ``after(n)``, when
  given, runs once ``n`` iterations are logged (the official loop logs after its EMA update).
  Every other logging call does nothing."""

  def __init__(self, after: Optional[Callable[[int], None]] = None):
    self.metrics: List[dict] = []
    self.after = after

  def log_metrics(self, metrics, i):
    self.metrics.append(dict(metrics))
    if self.after is not None:
      self.after(len(self.metrics))

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return lambda *args, **kwargs: None


class _NoSampleImages:
  """``gen_every`` for ``train.train()``: its test ``i % gen_every == 0`` is never true, so the
  pass that renders sample images for the logger never runs (logging, not training)."""

  def __rmod__(self, other):
    return 1


def train_arguments(init_size, batch: dict, lr: dict, phase=600_000, used_sample=0, max_size=128):
  """The ``args`` that ``train.train()`` reads, as the official README's command sets them
  (--mixing, WGAN-GP with real_penalty 0.001, n_critic 1), ``batch`` and ``lr`` per resolution."""
  return argparse.Namespace(
    init_size=init_size,
    max_size=max_size,
    batch=dict(batch),
    batch_default=32,
    num_workers=0,
    org_to_crop=1.125,
    lr=dict(lr),
    lr_disc_mult=1.0,
    phase=phase,
    used_sample=used_sample,
    mixing=True,
    same_mixing=False,
    loss="wgan-gp",
    real_penalty=0.001,
    n_critic=1,
  )


def wrap_generator(official: Official, generator, location_noise_fn=None, contrast_jitter=0.0):
  """``renderer.ModelWrapper`` around ``generator`` as the official ``__main__`` builds it: the
  shift perturber (when ``location_noise_fn`` is given), then the background contrast jitter
  (when positive), and the layered renderer."""
  perturber, renderer = official["perturber"], official["renderer"]
  parts = []
  if location_noise_fn is not None:
    parts.append(perturber.RandomShift(location_noise_fn))
  if contrast_jitter > 0:
    parts.append(perturber.BgContrastJitter(contrast_jitter))
  composite = perturber.CompositePerturber(*parts) if parts else None
  return renderer.ModelWrapper(generator, composite, renderer.LayeredRenderer())


def adam_optimizers(torch, generator, discriminator, lr, mapping_lr_mult):
  """The official Adam pair: betas (0, 0.99); the mapping networks in a group at ``lr *
  mapping_lr_mult`` that remembers its multiplier (``train.adjust_lr`` reads ``mult``)."""
  groups = generator.parameter_groups()
  g_opt = torch.optim.Adam(groups["generator"], lr=lr, betas=(0.0, 0.99))
  g_opt.add_param_group(
    {"params": groups["style"], "lr": lr * mapping_lr_mult, "mult": mapping_lr_mult}
  )
  d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.0, 0.99))
  return g_opt, d_opt


def run_train(
  official: Official,
  args,
  generator,
  g_running,
  discriminator,
  optimizers,
  mask_loss,
  loader,
  progress,
  logger,
  *,
  device,
  code_size,
  step=None,
):
  """One call of the official ``train.train(args, ...)``: ``generator`` is the wrapped (and
  DataParallel) generator, ``g_running`` the wrapped EMA copy, ``optimizers`` (generator's,
  critic's); the loop runs once per item of ``progress`` on the batches of ``loader``."""
  train = official["train"]
  # What train.py's __main__ leaves in the module's globals, and the loop's outside world.
  train.device, train.code_size, train.n_critic = device, code_size, args.n_critic
  train.g_optimizer, train.d_optimizer = optimizers
  train.sample_data = lambda *a, **k: loader
  train.tqdm = lambda *a, **k: progress
  train.save = lambda *a, **k: None
  train.train(
    args,
    None,
    generator,
    g_running,
    discriminator,
    mask_loss_fn=mask_loss,
    logger=logger,
    log_dir=official.folder,
    step=step,
    gen_every=_NoSampleImages(),
  )
