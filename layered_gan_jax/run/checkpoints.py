"""Checkpoints with Orbax. The ONLY module that imports orbax: an API change touches this file.

A checkpoint directory holds numbered steps; each step has array items (saved with
``StandardSave``) and JSON items (the config, and metadata such as the stage). Orbax writes a
step into ``<step>.orbax-checkpoint-tmp``, writes ``commit_success.txt`` into it last and then
renames it to ``<step>``, so a crash while saving leaves the previous checkpoints intact.

Orbax itself skips the temporary folders but takes any folder named by a number for a finished
step, even one without the commit marker (a copy or sync that stopped halfway, a file system
that lost the last writes): restoring it fails or reads a wrong step. So this module treats
such steps as incomplete too (:func:`layout.incomplete_steps`): :meth:`Checkpointer.latest_step`
and ``all_steps`` ignore every incomplete step (with a log line), and the first
:meth:`Checkpointer.save` of a run deletes them, so readers (evaluation, sampling) never remove
anything a running training may be writing.

Integrity. Every save adds a JSON item ``checksums``: the checksum of every array of the array
items, keyed by item and tree path (:mod:`layered_gan_jax.run.checksums`: a CRC-32 per array; any
flipped byte changes it). :meth:`Checkpointer.restore` verifies the arrays it restored and
raises :class:`DamagedCheckpoint` (a ``ConfigError``) at the first mismatch, or when reading a
verifiable step fails on its data; the step is then left out of ``all_steps`` /
``latest_step``. :meth:`Checkpointer.restore_latest` (what ``trained.resume`` and the
loaders use) skips a damaged step with one warning line naming the step, the item and the
array, and falls back to the previous complete step; when none is intact it raises a
``ConfigError`` naming the damaged steps. The writer's first save moves a damaged step aside
to ``<step>.damaged`` (``<step>.damaged-2``, ... if taken; a name Orbax never takes for a step,
nor this module for an incomplete one), process 0 only, so that saving that step again does not
collide with it; nothing damaged is deleted, and readers move nothing. Steps written before
checksums existed restore unverified, with one warning line per checkpointer. JSON items
(config, meta) are not verified.

A save that fails on a write (disk full, no permission, an object-store error:
``errors.write_failure_reason``) raises ``errors.WriteFailed`` from the original error; any
other error is re-raised unchanged. Orbax leaves the failed step as a temporary folder
(``<step>.orbax-checkpoint-tmp*``), which the next run treats as incomplete; nothing complete is
removed.
"""

import contextlib
import json
import os
import re
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from layered_gan_jax import errors, files
from layered_gan_jax.run import checksums, layout, lease
from layered_gan_jax.run.layout import COMMIT_MARKER, DAMAGED_SUFFIX

CHECKSUMS = "checksums"  # The JSON item every save adds (see the module docstring).
JSON_ITEMS = ("config", "meta", CHECKSUMS)
# How tensorstore / zstd / Orbax word a step whose files are damaged (cut short, garbled,
# missing); JSON and UTF-8 decoding errors count too. Not a file that may not be read.
_DATA_LOSS = re.compile(
  r"DATA_LOSS|OUT_OF_RANGE|corrupt|decompress|zstd|Error (reading|opening|"
  r"decoding)|Unexpected end|truncated",
  re.IGNORECASE,
)
_NOT_DAMAGE = re.compile(
  r"permission|PERMISSION_DENIED|access denied|forbidden|\b40[13]\b", re.IGNORECASE
)
T = TypeVar("T")


class StepRemoved(errors.ConfigError):
  """A step removed by the training that writes its folder (keep-last-N) while a reader was
  about to read it."""

  def __init__(self, directory: str, step: int):
    super().__init__(
      f"the checkpoint of step {step} in {directory} was removed by the training "
      "that writes this folder (it keeps its last checkpoints only) before it "
      "could be read; give a step it still keeps, or leave --step out for the "
      "latest"
    )
    self.directory, self.step = directory, step


class _HeldByReaders:
  """Orbax's preservation policy for the steps that readers hold (lease.held_steps): the
  writer's keep-last-N leaves them until they are released. One-process jobs only: the
  processes of a multi-host job would read the holds at different moments and disagree on
  what to keep, so there no hold is written or honoured (a reader beside such a training may
  find its step removed: :class:`StepRemoved`, one line)."""

  def __init__(self, directory: str):
    self._directory = directory

  def should_preserve(self, checkpoints, *, context=None) -> List[bool]:
    del context
    if jax.process_count() > 1:
      return [False] * len(checkpoints)
    held = lease.held_steps(self._directory, lease.READ_HOLD_STALE_S)
    return [info.step in held for info in checkpoints]


class DamagedCheckpoint(errors.ConfigError):
  """A checkpoint step whose restored arrays do not match the checksums saved with it (or
  whose data files cannot be decoded). ``step``, ``item``, ``array`` (a tree path, or None)
  and ``detail`` say where and what."""

  def __init__(self, directory: str, step: int, item: str, array: Optional[str], detail: str):
    where = f"array {array} of item '{item}'" if array else f"the data of item(s) {item}"
    super().__init__(f"the checkpoint of step {step} in {directory} is damaged: {where} {detail}")
    self.directory, self.step, self.item, self.array, self.detail = (
      directory,
      step,
      item,
      array,
      detail,
    )


def config_to_dict(config) -> Dict[str, Any]:
  """A ConfigDict as plain JSON-compatible data."""
  return json.loads(config.to_json_best_effort())


def abstract_like(tree):
  """Shape/dtype/sharding structs of a pytree of arrays (the restore target)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def orbax_directory(directory: str) -> epath.Path:
  """The directory handed to Orbax: the checkpoint folder itself (a local path or a URI).
  The one seam between the project's paths and Orbax's array storage (tests/test_files.py)."""
  return epath.Path(directory)


def _moved_aside_name(path: epath.Path) -> epath.Path:
  """``<step>.damaged``, else ``<step>.damaged-N`` with the first free N >= 2 (never a name
  ending in ``_<digits>``, which Orbax would read as a step)."""
  target, n = path.parent / (path.name + DAMAGED_SUFFIX), 2
  while target.exists():
    target, n = path.parent / f"{path.name}{DAMAGED_SUFFIX}-{n}", n + 1
  return target


def _move_aside(path: epath.Path, target: epath.Path) -> None:
  """Renames a step folder; on an object store (no rename of a folder) copies each object,
  then deletes the originals."""
  if not files.is_uri(path):
    path.rename(target)
    return
  # Listed through iterdir, which keeps the URI's scheme (etils' walk() over gcsfs yields
  # paths without "gs://"); whole, before anything is written.
  listing = []  # (folder, [file names]), parents first.

  def scan(folder: epath.Path) -> None:
    children = list(folder.iterdir())
    listing.append((folder, [c.name for c in children if not c.is_dir()]))
    for child in children:
      if child.is_dir():
        scan(child)

  scan(path)
  for root, names in listing:
    relative = os.fspath(root)[len(os.fspath(path)) :].strip("/")
    folder = target / relative if relative else target
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
      (root / name).copy(folder / name)
  for root, names in listing:  # Then the originals: each object, then the folders.
    for name in names:
      (root / name).unlink()
  for root, _ in reversed(listing):
    try:
      root.rmdir()
    except (OSError, ValueError):  # Gone with its last object; or a store's quirk: empty.
      pass


def _is_data_loss(exc: BaseException) -> bool:
  """Whether ``exc`` (or an error it was raised from) says a file's bytes cannot be decoded."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if _NOT_DAMAGE.search(str(exc)):
      return False
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)) or _DATA_LOSS.search(str(exc)):
      return True
    exc = exc.__cause__ or exc.__context__
  return False


class Checkpointer:
  """Keeps the last ``max_to_keep`` steps of a set of named items under ``directory``.

  Incomplete steps (see :func:`layout.incomplete_steps`) are never listed nor restored; the first
  save deletes them (the caller is then the one process writing this directory). Damaged steps
  are left out once a restore has found them, and moved aside by the next save (see the
  module docstring)."""

  def __init__(self, directory: str, item_names: Iterable[str], max_to_keep: int = 3):
    # A local path made absolute, a URI (gs://...) as given: Orbax writes there through epath.
    self.directory = str(files.resolve(directory))
    self.item_names = tuple(item_names)
    if CHECKSUMS in self.item_names:
      raise ValueError(f"the item name {CHECKSUMS!r} is reserved: every save adds it")
    self._arrays = tuple(n for n in self.item_names if n not in JSON_ITEMS)
    self._incomplete = layout.incomplete_steps(self.directory)
    for step, path, reason in self._incomplete:
      logging.warning(
        "Ignoring the incomplete checkpoint step %d at %s (%s); the previous complete step is used",
        step,
        path,
        reason,
      )
    self._cleaned = False
    self._damaged: Dict[int, DamagedCheckpoint] = {}
    self._warned_unverified = False
    keep = ocp.checkpoint_managers.AnyPreservationPolicy(
      [ocp.checkpoint_managers.LatestN(max_to_keep), _HeldByReaders(self.directory)]
    )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=keep, create=True, enable_async_checkpointing=False
    )
    names = self.item_names + ((CHECKSUMS,) if self._arrays else ())
    self._manager = ocp.CheckpointManager(
      orbax_directory(self.directory), options=options, item_names=names
    )

  def latest_step(self) -> Optional[int]:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def all_steps(self):
    """The complete steps, less those a restore of this checkpointer found damaged."""
    ignored = {step for step, path, _ in self._incomplete if epath.Path(path).name.isdigit()}
    return sorted(
      s for s in self._manager.all_steps() if s not in ignored and s not in self._damaged
    )

  def damaged_steps(self) -> List[int]:
    """The steps a restore of this checkpointer found damaged (and not yet moved aside)."""
    return sorted(self._damaged)

  def _remove_incomplete(self) -> None:
    """Deletes the incomplete steps found when this checkpointer was made, and moves the
    damaged steps found by its restores aside to ``<step>.damaged`` (process 0; the other
    processes wait), so that orbax neither counts them nor collides with them."""
    self._cleaned = True
    if jax.process_index() == 0:
      for step, path, reason in self._incomplete:
        logging.warning("Removing the incomplete checkpoint step %d at %s (%s)", step, path, reason)
        try:
          epath.Path(path).rmtree()
        except FileNotFoundError:
          pass
      for step in sorted(self._damaged):
        path = orbax_directory(self.directory) / str(step)
        if path.exists():
          target = _moved_aside_name(path)
          logging.warning(
            "Moving the damaged checkpoint step %d aside to %s (kept for "
            "inspection; delete it when done)",
            step,
            target,
          )
          _move_aside(path, target)
    if jax.process_count() > 1:  # Every process, whatever it found: no one waits alone.
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      multihost_utils.sync_global_devices("checkpointing_remove_incomplete")
    if self._incomplete or self._damaged:
      self._incomplete, self._damaged = [], {}
      self._manager.reload()

  def save(self, step: int, items: Dict[str, Any]) -> None:
    """Saves ``items`` (and the ``checksums`` of their array items) as ``step``. A failed
    write raises ``errors.WriteFailed`` (see the module docstring)."""
    if not self._cleaned or self._damaged:  # Every process: the same restores found the same.
      self._remove_incomplete()
    arrays = {name: value for name, value in items.items() if name not in JSON_ITEMS}
    if CHECKSUMS in items:
      raise ValueError(f"the item name {CHECKSUMS!r} is reserved: every save adds it")
    if arrays:
      items = dict(
        items,
        **{
          CHECKSUMS: {"algorithm": checksums.ALGORITHM, "arrays": checksums.items_checksums(arrays)}
        },
      )
    args = {
      name: (ocp.args.JsonSave(value) if name in JSON_ITEMS else ocp.args.StandardSave(value))
      for name, value in items.items()
    }
    try:
      with errors.writing(f"the checkpoint of step {step}", self.directory):
        self._manager.save(step, args=ocp.args.Composite(**args), force=True)
        self._manager.wait_until_finished()
    except errors.WriteFailed:
      # Orbax leaves the other arrays' writes of this save unawaited; Python would report
      # each at exit, after the one line that says why the run stopped.
      warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
      raise

  def reached_preemption(self, step: int) -> bool:
    """Whether ``step`` is the step at which every process stops after a preemption notice
    (SIGTERM to any of them; see :mod:`layered_gan_jax.training.preemption`). False in one process."""
    return self._manager.reached_preemption(step)

  def _verifiable(self, step: int) -> bool:
    return (orbax_directory(self.directory) / str(step) / CHECKSUMS).exists()

  def _damage(self, error: DamagedCheckpoint) -> DamagedCheckpoint:
    self._damaged.setdefault(error.step, error)
    return error

  def restore(self, step: int, targets: Dict[str, Any]) -> Dict[str, Any]:
    """Restores the named items only. ``targets[name]`` is an abstract pytree (see
    :func:`abstract_like`) for array items and ``None`` for JSON items. The restored arrays
    are verified against the step's checksums: :class:`DamagedCheckpoint` at the first
    mismatch (the step is then left out of :meth:`all_steps`)."""
    arrays = [name for name in targets if name not in JSON_ITEMS]
    verify = bool(arrays) and self._verifiable(step)
    args = {
      name: (ocp.args.JsonRestore() if name in JSON_ITEMS else ocp.args.StandardRestore(target))
      for name, target in targets.items()
    }
    if verify:
      args[CHECKSUMS] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as exc:  # pylint: disable=broad-except
      if not (verify and _is_data_loss(exc)):
        raise
      first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
      raise self._damage(
        DamagedCheckpoint(
          self.directory,
          step,
          ", ".join(arrays + [CHECKSUMS]),
          None,
          f"cannot be read back ({first})",
        )
      ) from exc
    if verify and (restored[CHECKSUMS] or {}).get("algorithm") != checksums.ALGORITHM:
      verify = False  # Written by a version with another algorithm: unverifiable here.
    if verify:
      saved = restored[CHECKSUMS].get("arrays", {})
      mismatch = checksums.first_mismatch({name: restored[name] for name in arrays}, saved)
      if mismatch is not None:
        item, array, detail = mismatch
        raise self._damage(
          DamagedCheckpoint(
            self.directory,
            step,
            item,
            array,
            f"does not match the checksum saved with it ({detail}; a bad copy or disk?)",
          )
        )
    elif arrays and not self._warned_unverified:
      self._warned_unverified = True
      logging.warning(
        "The checkpoint of step %d in %s holds no %s checksums (written "
        "before they were saved): its arrays are restored unverified",
        step,
        self.directory,
        checksums.ALGORITHM,
      )
    return {name: restored[name] for name in targets}

  @contextlib.contextmanager
  def reading(self, step: int) -> Iterator[None]:
    """Holds ``step`` for the block (:class:`layered_gan_jax.run.lease.ReadHold`): a training that
    writes this folder meanwhile keeps it (see :class:`_HeldByReaders`). If the step was
    removed before the hold was seen (its folder gone, or going, when a read in the block
    fails), :class:`StepRemoved`."""
    folder = orbax_directory(self.directory) / str(step)  # Orbax's own files.
    if jax.process_count() > 1:  # Holds are for one-process jobs (see _HeldByReaders).
      yield
      return
    with lease.ReadHold(self.directory, step):
      marked = (folder / COMMIT_MARKER).exists()
      if not (folder.exists()):
        raise StepRemoved(self.directory, step)
      try:
        yield
      except errors.ConfigError:  # Damaged, or another model: not a removal.
        raise
      except Exception as exc:  # pylint: disable=broad-except
        if folder.exists() and (folder / COMMIT_MARKER).exists() == marked:
          raise
        raise StepRemoved(self.directory, step) from exc

  def restore_latest(self, restore_step: Callable[[int], T]) -> Tuple[Optional[int], Optional[T]]:
    """``(step, restore_step(step))`` for the latest complete step that ``restore_step``
    (which restores through this checkpointer) restores intact, each tried under
    :meth:`reading`; ``(None, None)`` when there is no complete step. A damaged step is
    skipped with one warning line; if every step is damaged, ``errors.ConfigError``. A step
    that a training removed before this reader's hold was seen is skipped for the then
    latest."""
    for _ in range(3):  # A writer that saves faster than this reads: give up after 3.
      try:
        return self._restore_latest_once(restore_step)
      except StepRemoved as e:
        logging.warning("%s; reading the latest step again", e)
        self._manager.reload()
    return self._restore_latest_once(restore_step)

  def _restore_latest_once(self, restore_step):
    steps = self.all_steps()
    for i in range(len(steps) - 1, -1, -1):
      try:
        with self.reading(steps[i]):
          return steps[i], restore_step(steps[i])
      except DamagedCheckpoint as e:
        if e.directory != self.directory or e.step != steps[i]:
          raise  # Another checkpoint's damage: not this step's.
        logging.warning(
          "Skipping a damaged checkpoint: %s; %s",
          e,
          f"falling back to step {steps[i - 1]}" if i else "no earlier step",
        )
    if self._damaged:
      damaged = ", ".join(map(str, sorted(self._damaged)))
      raise errors.ConfigError(
        f"no intact checkpoint in {self.directory}: step(s) {damaged} are damaged (their "
        "arrays do not match the checksums saved with them); restore the folder from a good "
        "copy, or move it away to start afresh"
      )
    return None, None

  def read_json(self, step: int, name: str) -> Dict[str, Any]:
    return self.restore(step, {name: None})[name]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
