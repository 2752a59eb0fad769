"""Checkpoints with Orbax. The ONLY module that imports orbax: an API change touches this file.

A checkpoint directory holds numbered steps; each step has array items (saved with
``StandardSave``) and JSON items (the config, and metadata such as the stage). Orbax writes a
step into a temporary folder and renames it when complete, so a crash while saving leaves the
previous checkpoints intact, and an unfinished step is ignored on restore.
"""

import json
import os
from typing import Any, Dict, Iterable, Optional

import jax
import orbax.checkpoint as ocp

JSON_ITEMS = ("config", "meta")


def config_to_dict(config) -> Dict[str, Any]:
  """A ConfigDict as plain JSON-compatible data."""
  return json.loads(config.to_json_best_effort())


def abstract_like(tree):
  """Shape/dtype/sharding structs of a pytree of arrays (the restore target)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
  """Keeps the last ``max_to_keep`` steps of a set of named items under ``directory``."""

  def __init__(self, directory: str, item_names: Iterable[str], max_to_keep: int = 3):
    self.directory = os.path.abspath(directory)
    self.item_names = tuple(item_names)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=self.item_names)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, step: int, items: Dict[str, Any]) -> None:
    args = {name: (ocp.args.JsonSave(value) if name in JSON_ITEMS
                   else ocp.args.StandardSave(value)) for name, value in items.items()}
    self._manager.save(step, args=ocp.args.Composite(**args), force=True)
    self._manager.wait_until_finished()

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
