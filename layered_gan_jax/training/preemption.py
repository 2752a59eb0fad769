"""Stopping a training cleanly on SIGTERM, at one step that every process agrees on.

One process: a Python SIGTERM handler sets a flag that the loop reads before each iteration.

Several processes (``jax.distributed``): ``jax.distributed.initialize`` starts JAX's preemption
service, which catches SIGTERM itself, tells the other processes, and agrees with them on a step
(one past the furthest any of them has reached). The loop asks for it at every step through
Orbax (``Checkpointer.reached_preemption``), so a signal that reaches one host only stops every
host at the same step, each saving its part of one checkpoint. A Python handler would replace
the service's own, so none is installed then.
"""

import signal

import jax
from absl import logging


class PreemptionGuard:
  """``with PreemptionGuard(ckpt) as guard:`` and, before every iteration of every process,
  ``if guard.stop_at(step): save, then raise Preempted``. Entered early (before compiling), so
  that a SIGTERM during setup stops at the first step."""

  def __init__(self, ckpt):
    self._ckpt = ckpt
    self._previous = None
    self._installed = False
    self.requested = False  # Set by the handler (one process) or once the agreed step is reached.

  def __enter__(self):
    if jax.process_count() == 1:
      try:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        self._installed = True
      except ValueError:  # Not the main thread: no handler.
        pass
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def stop_at(self, step: int) -> bool:
    """Whether to stop before running iteration ``step``. Every process must call it at every
    step, with the same ``step``s (the preemption service counts the calls)."""
    if self._ckpt.reached_preemption(step):
      logging.warning("Preemption: every process stops at step %d, saving a checkpoint.", step)
      self.requested = True
    return self.requested

  def __exit__(self, *exc):
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
    return False
