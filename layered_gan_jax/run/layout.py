"""The run folder's layout: where each trained network keeps its checkpoints, what a checkpoint
step holds, and which steps are complete. Imports no JAX and no Orbax: the checks read the run
folder with it before JAX starts, and the checkpointer (:mod:`layered_gan_jax.run.checkpoints`)
follows the same rule.

A workdir holds one folder per trained network (:data:`NETWORKS`); each holds one folder per
saved step, ``<step>/``, with one subfolder per item. Orbax writes :data:`COMMIT_MARKER` last
into every step it finishes, on a local disk (inside its temporary folder, before the rename)
and on an object store (where it writes the step's objects in place, so a killed save leaves a
``<step>/`` without it). A step is *incomplete* if it is an Orbax temporary folder
(``<step>.orbax-checkpoint-tmp*``) or lacks the marker, also when it is the only step of its
folder (the first save of a run killed on a bucket). A damaged step that the writer moved aside
is ``<step>.damaged``.
"""

import json
import re
from typing import Dict, List, Tuple

from etils import epath

GAN_DIR = "checkpoints"
ENCODER_DIR = "encoder_checkpoints"
SEGMENTER_DIR = "segmenter_checkpoints"
# (what a stop calls the network, its folder), in the order of a pipeline.
NETWORKS = (("GAN", GAN_DIR), ("encoder", ENCODER_DIR), ("distilled segmenter", SEGMENTER_DIR))
# The items of each network's checkpoint (``ema``: the EMA generator alone, what inference
# restores; ``best``: the segmenter's selected parameters).
GAN_ITEMS = ("state", "ema", "config", "meta")
ENCODER_ITEMS = ("state", "config", "meta")
SEGMENTER_ITEMS = ("state", "best", "config", "meta")

COMMIT_MARKER = "commit_success.txt"
DAMAGED_SUFFIX = ".damaged"
_TEMPORARY = re.compile(r"^(\d+)\.orbax-checkpoint-tmp")


def _step_folders(
  directory: epath.Path,
) -> Tuple[List[Tuple[int, str, str]], List[Tuple[int, str, bool]]]:
  temporary, steps = [], []
  for child in directory.iterdir():
    name, path = child.name, str(child)
    match = _TEMPORARY.match(name)
    if match and child.is_dir():
      temporary.append(
        (int(match.group(1)), path, "temporary folder of a save that did not finish")
      )
    elif name.isdigit() and child.is_dir():
      steps.append((int(name), path, (child / COMMIT_MARKER).exists()))
  return temporary, steps


def incomplete_steps(directory) -> List[Tuple[int, str, str]]:
  """``(step, path, reason)`` of every unfinished save under ``directory``, sorted by step (the
  rule of the module docstring). A committed step is never flagged."""
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  found, steps = _step_folders(directory)
  found += [
    (step, path, f"no {COMMIT_MARKER}: the save did not finish")
    for step, path, committed in steps
    if not committed
  ]
  return sorted(found)


def complete_steps(directory) -> List[int]:
  """The finished steps in ``directory``, sorted (the rule of the module docstring)."""
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  _, steps = _step_folders(directory)
  return sorted(step for step, _, committed in steps if committed)


def read_saved(directory, step: int, item: str) -> Dict:
  """A JSON item (``config``, ``meta``) of step ``step``, read without Orbax."""
  return json.loads((epath.Path(directory) / str(step) / item / "metadata").read_text())
