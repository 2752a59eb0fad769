"""Checksums of the arrays of a pytree: what lets a checkpoint prove that it is intact.

:func:`items_checksums` maps each named pytree's array leaves, by path
(``jax.tree_util.keystr``), to ``{"dtype": ..., "shape": [...], "crc32": 8 hex digits}``;
:func:`first_mismatch` compares restored pytrees with such a record. ``checkpoints.Checkpointer``
saves the record of every array item in the checkpoint's ``checksums`` JSON item and verifies it
when it restores.

Contract of ``crc32`` (:data:`ALGORITHM`; a new name if it ever changes): ``zlib.crc32`` (CRC-32,
the IEEE 802.3 polynomial, as ``binascii``, gzip and zip compute it) of the array's bytes in
row-major order, as ``np.asarray(x).tobytes()`` gives them (a typed PRNG key array: of its
``jax.random.key_data``). A CRC-32 detects every error burst of up to 32 bits, so ANY change
confined to 4 consecutive bytes, in particular any flipped byte or bit, changes it
(``tests/test_checkpoint_integrity.py`` flips every bit of arrays of each dtype); other damage goes
unnoticed with probability 2**-32 per array. It is a function of the bytes alone: the same on
every process, every run, any device count and sharding (a replicated array is hashed once, as
the global array it is).

Cost (``benchmarks/checkpoint_hashing.py``, against the save's own time; results in
``benchmarks/results/checkpoint_hashing.json``): zlib's CRC-32 releases the GIL, so the arrays
of 1 MiB or more are hashed in a thread pool, one array per task, the small ones in the calling
thread; on a CPU ``np.asarray`` of a jax array is no copy. On the 2-core CPU VM: 3.6 % of the
save of car.py's GAN state (1.1 GB, 1024 arrays; 0.115 s of 3.2 s), 1.3 % of the quick start's
(12 MB, 656 arrays). The same work compiled by XLA (a position-weighted uint32 sum and a
MurmurHash3-finaliser sum, 64 bits) took 20 % there, plus 4 to 10 s of compile per tree
structure. On an accelerator the arrays are copied to the host first (every copy started at
once).

Leaves that are not arrays (Python numbers), and arrays that this process cannot read whole (an
array sharded over several processes: this project saves replicated ones), get no entry: they
are saved and restored unverified.
"""

import os
import zlib
from concurrent import futures
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

ALGORITHM = "crc32"
_WORKERS = max(1, min(32, os.cpu_count() or 1))
_POOLED_BYTES = 1 << 20  # Arrays this large are hashed in the thread pool.


def _is_key(leaf) -> bool:
  return jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _hashable(leaf) -> bool:
  if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
    return False
  if isinstance(leaf, jax.Array) and not (leaf.is_fully_addressable or leaf.is_fully_replicated):
    return False
  return True


def _nbytes(leaf) -> int:
  return (
    int(np.prod(np.shape(leaf), dtype=np.int64))
    * np.dtype(jnp.uint32 if _is_key(leaf) else leaf.dtype).itemsize
  )


def _dtype_name(leaf) -> str:
  return str(leaf.dtype) if _is_key(leaf) else str(np.dtype(leaf.dtype))


def _host(leaf) -> np.ndarray:
  if isinstance(leaf, jax.Array) and _is_key(leaf):
    leaf = jax.random.key_data(leaf)
  return np.ascontiguousarray(np.asarray(leaf))


def crc32(leaf) -> str:
  """The ``crc32`` of one array (8 hex digits)."""
  data = _host(leaf).reshape(-1).view(np.uint8)
  return f"{zlib.crc32(memoryview(data)):08x}"


def digests(leaves: List[Any]) -> List[str]:
  """The ``crc32`` of each array of ``leaves``: arrays of at least :data:`_POOLED_BYTES` in a
  thread pool (when there are several), the small ones in this thread (a task costs more than
  their CRC)."""
  for leaf in leaves:  # Every device-to-host copy starts now, none waits for another.
    if (
      isinstance(leaf, jax.Array)
      and not _is_key(leaf)
      and leaf.is_fully_addressable
      and any(d.platform != "cpu" for d in leaf.devices())
    ):  # On a CPU: no copy at all.
      leaf.copy_to_host_async()
  large = [i for i, leaf in enumerate(leaves) if _nbytes(leaf) >= _POOLED_BYTES]
  out: List[Optional[str]] = [None] * len(leaves)
  if len(large) > 1 and _WORKERS > 1:
    with futures.ThreadPoolExecutor(min(_WORKERS, len(large))) as pool:
      for i, s in zip(large, pool.map(lambda i: crc32(leaves[i]), large)):
        out[i] = s
  for i, leaf in enumerate(leaves):
    if out[i] is None:
      out[i] = crc32(leaf)
  return out


def _entries(tree) -> List[Tuple[str, Any]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat if _hashable(leaf)]


def items_checksums(items: Dict[str, Any]) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """``{item: {path: {"dtype", "shape", "crc32"}}}`` of every array leaf of each pytree of
  ``items`` (one thread pool for all of them)."""
  entries = [(name, path, leaf) for name, tree in items.items() for path, leaf in _entries(tree)]
  sums = digests([leaf for _, _, leaf in entries])
  out = {name: {} for name in items}
  for (name, path, leaf), s in zip(entries, sums):
    out[name][path] = {"dtype": _dtype_name(leaf), "shape": list(np.shape(leaf)), ALGORITHM: s}
  return out


def first_mismatch(
  items: Dict[str, Any], saved: Dict[str, Dict[str, Dict[str, Any]]]
) -> Optional[Tuple[str, str, str]]:
  """``(item, path, what)`` of the first array of ``items`` (items in order, then tree order)
  whose checksum differs from ``saved[item][path]``, else None. Arrays without a saved entry,
  or restored with another dtype or shape than the one saved (a cast the caller asked for), are
  not compared."""
  entries = []
  for name, tree in items.items():
    record = saved.get(name) or {}
    entries += [
      (name, path, leaf)
      for path, leaf in _entries(tree)
      if path in record
      and record[path].get("shape") == list(np.shape(leaf))
      and record[path].get("dtype") == _dtype_name(leaf)
    ]
  sums = digests([leaf for _, _, leaf in entries])
  for (name, path, _), s in zip(entries, sums):
    if s != saved[name][path].get(ALGORITHM):
      return name, path, f"{ALGORITHM} {s}, saved {saved[name][path].get(ALGORITHM)}"
  return None
