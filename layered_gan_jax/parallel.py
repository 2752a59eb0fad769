"""Data parallelism over every device of every host: a 1-D mesh with a ``data`` axis.

Steps are written once in global view and compiled with ``jax.jit`` and ``NamedSharding``:
parameters and optimizer state are replicated, batches are split over ``data``. XLA inserts the
gradient all-reduce (and the cross-device reduction of the critic's minibatch-stddev statistic,
which is computed over the whole global batch, as on one device).
"""

import collections
import functools
import os
from typing import Iterator

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def maybe_initialize_distributed() -> None:
  """Calls ``jax.distributed.initialize()`` when launched as one of several processes.

  Cloud TPU pod slices are detected by JAX itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (see the README).
  """
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
      kwargs = dict(
        coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]),
      )
    jax.distributed.initialize(**kwargs)
    logging.info(
      "jax.distributed initialized: process %d of %d, %d local / %d global devices",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
    )


@functools.lru_cache(maxsize=None)
def data_mesh() -> jax.sharding.Mesh:
  """A mesh over all devices with one automatic ``data`` axis."""
  return jax.make_mesh(
    (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
  )


def replicated() -> NamedSharding:
  return NamedSharding(data_mesh(), P())


def batch_sharded() -> NamedSharding:
  return NamedSharding(data_mesh(), P(DATA_AXIS))


def check_batch_size(global_batch: int, what: str = "batch size") -> None:
  n = jax.device_count()
  if global_batch % n:
    raise ValueError(
      f"{what} {global_batch} is not divisible by the {n} devices; choose a multiple of {n}"
    )
  if global_batch % jax.process_count():
    raise ValueError(
      f"{what} {global_batch} is not divisible by the {jax.process_count()} processes"
    )


def per_process_batch(global_batch: int) -> int:
  return global_batch // jax.process_count()


def put_batch(local_batch):
  """Assembles per-process host arrays into global arrays split over the ``data`` axis."""
  sharding = batch_sharded()
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )


def prefetch_to_device(host_batches: Iterator, depth: int) -> Iterator:
  """``put_batch`` of each element of ``host_batches``, ``depth`` ahead of the one consumed: the
  transfer of the next batches is under way while the step on the current one runs (0: each
  put when it is asked for)."""
  queue = collections.deque()
  for batch in host_batches:
    queue.append(put_batch(batch))
    if len(queue) > depth:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def put_replicated(tree):
  return jax.device_put(tree, replicated())
