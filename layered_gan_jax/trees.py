"""Nested dicts (configs, parameter trees) as flat dicts with joined keys, and back. Imports
nothing: the checks use it before JAX starts.
"""

from typing import Any, Dict


def flatten(tree, sep: str = ".") -> Dict[str, Any]:
  """``{'train': {'lr': 0.001}}`` -> ``{'train.lr': 0.001}``; descends into anything with
  ``items()`` (dicts, ConfigDicts), in their order."""
  out = {}
  for key, value in tree.items():
    if hasattr(value, "items") and not isinstance(value, (str, bytes)):
      out.update({f"{key}{sep}{k}": v for k, v in flatten(value, sep).items()})
    else:
      out[str(key)] = value
  return out


def unflatten(flat: Dict[str, Any], sep: str = ".") -> Dict[str, Any]:
  """The inverse of :func:`flatten` (plain dicts)."""
  tree = {}
  for key, value in flat.items():
    *parents, leaf = key.split(sep)
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree
