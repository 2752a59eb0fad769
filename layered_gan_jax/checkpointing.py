"""Checkpoints with Orbax. The ONLY module that imports orbax: an API change touches this file.

A checkpoint directory holds numbered steps; each step has array items (saved with
``StandardSave``) and JSON items (the config, and metadata such as the stage). Orbax writes a
step into ``<step>.orbax-checkpoint-tmp``, writes ``commit_success.txt`` into it last and then
renames it to ``<step>``, so a crash while saving leaves the previous checkpoints intact.

Orbax itself skips the temporary folders but takes any folder named by a number for a finished
step, even one without the commit marker (a copy or sync that stopped halfway, a file system
that lost the last writes): restoring it fails or reads a wrong step. So this module treats
such steps as incomplete too (see :func:`incomplete_steps`): :meth:`Checkpointer.latest_step` and ``all_steps`` ignore every
incomplete step (with a log line), and the first :meth:`Checkpointer.save` of a run deletes
them, so readers (evaluation, sampling) never remove anything a running training may be
writing.
"""

import json
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import jax
from absl import logging
import orbax.checkpoint as ocp
from etils import epath

from layered_gan_jax import files

JSON_ITEMS = ("config", "meta")
COMMIT_MARKER = "commit_success.txt"  # Orbax writes it last into every finished step.
_TEMPORARY = re.compile(r"^(\d+)\.orbax-checkpoint-tmp")


def config_to_dict(config) -> Dict[str, Any]:
  """A ConfigDict as plain JSON-compatible data."""
  return json.loads(config.to_json_best_effort())


def abstract_like(tree):
  """Shape/dtype/sharding structs of a pytree of arrays (the restore target)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def incomplete_steps(directory: str) -> List[Tuple[int, str, str]]:
  """``(step, path, reason)`` of every unfinished save under ``directory``, sorted by step:
  orbax temporary folders ``<step>.orbax-checkpoint-tmp*``, and step folders without
  ``commit_success.txt`` when other steps have one. (A directory in which no step has the
  marker, written by an orbax that does not write it, is left to orbax: nothing is flagged. A
  committed step is never flagged.)"""
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  found, steps = [], []
  for child in directory.iterdir():
    name, path = child.name, str(child)
    match = _TEMPORARY.match(name)
    if match and child.is_dir():
      found.append((int(match.group(1)), path, "temporary folder of a save that did not finish"))
    elif name.isdigit() and child.is_dir():
      steps.append((int(name), path, (child / COMMIT_MARKER).exists()))
  if any(committed for _, _, committed in steps):
    found += [(step, path, f"no {COMMIT_MARKER}: the save did not finish")
              for step, path, committed in steps if not committed]
  return sorted(found)


def orbax_directory(directory: str) -> epath.Path:
  """The directory handed to Orbax: the checkpoint folder itself (a local path or a URI).
  The one seam between the project's paths and Orbax's array storage (tests/test_files.py)."""
  return epath.Path(directory)


class Checkpointer:
  """Keeps the last ``max_to_keep`` steps of a set of named items under ``directory``.

  Incomplete steps (see :func:`incomplete_steps`) are never listed nor restored; the first
  save deletes them (the caller is then the one process writing this directory)."""

  def __init__(self, directory: str, item_names: Iterable[str], max_to_keep: int = 3):
    # A local path made absolute, a URI (gs://...) as given: Orbax writes there through epath.
    self.directory = str(files.resolve(directory))
    self.item_names = tuple(item_names)
    self._incomplete = incomplete_steps(self.directory)
    for step, path, reason in self._incomplete:
      logging.warning("Ignoring the incomplete checkpoint step %d at %s (%s); the previous "
                      "complete step is used", step, path, reason)
    self._cleaned = False
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(orbax_directory(self.directory), options=options,
                                          item_names=self.item_names)

  def latest_step(self) -> Optional[int]:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def all_steps(self):
    ignored = {step for step, path, _ in self._incomplete if epath.Path(path).name.isdigit()}
    return sorted(s for s in self._manager.all_steps() if s not in ignored)

  def _remove_incomplete(self) -> None:
    """Deletes the incomplete steps found when this checkpointer was made (process 0; the
    other processes wait), so that orbax neither counts them nor collides with them."""
    self._cleaned = True
    if jax.process_index() == 0:
      for step, path, reason in self._incomplete:
        logging.warning("Removing the incomplete checkpoint step %d at %s (%s)", step, path,
                        reason)
        try:
          epath.Path(path).rmtree()
        except FileNotFoundError:
          pass
    if jax.process_count() > 1:  # Every process, whatever it found: no one waits alone.
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("checkpointing_remove_incomplete")
    if self._incomplete:
      self._incomplete = []
      self._manager.reload()

  def save(self, step: int, items: Dict[str, Any]) -> None:
    if not self._cleaned:
      self._remove_incomplete()
    args = {name: (ocp.args.JsonSave(value) if name in JSON_ITEMS
                   else ocp.args.StandardSave(value)) for name, value in items.items()}
    self._manager.save(step, args=ocp.args.Composite(**args), force=True)
    self._manager.wait_until_finished()

  def reached_preemption(self, step: int) -> bool:
    """Whether ``step`` is the step at which every process stops after a preemption notice
    (SIGTERM to any of them; see :mod:`layered_gan_jax.preemption`). False in one process."""
    return self._manager.reached_preemption(step)

  def restore(self, step: int, targets: Dict[str, Any]) -> Dict[str, Any]:
    """Restores the named items only. ``targets[name]`` is an abstract pytree (see
    :func:`abstract_like`) for array items and ``None`` for JSON items."""
    args = {name: (ocp.args.JsonRestore() if name in JSON_ITEMS
                   else ocp.args.StandardRestore(target)) for name, target in targets.items()}
    restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    return {name: restored[name] for name in targets}

  def read_json(self, step: int, name: str) -> Dict[str, Any]:
    return self.restore(step, {name: None})[name]

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
