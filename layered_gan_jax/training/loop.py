"""The loop every trainer (GAN, encoder, distilled segmenter) shares: preemption, metric
averaging, the non-finite stop, progress lines and "is it time" for periodic actions.

  loop = TrainLoop("encoder", ckpt, writer, max_steps, log_every_steps, save, console_keys)
  with loop:
    for step in loop.steps(start_step):        # SIGTERM: save, then raise Preempted
      state, metrics = train_step(state, ...)
      loop.record(step + 1, metrics, batch_size)   # averaged, checked, written every N steps
      if loop.itstime(step + 1, checkpoint_every_steps):
        loop.save(step + 1)
  loop.finish()

``save(step) -> step`` writes one checkpoint of the trainer's own; the loop keeps the step of
the last one, which every error message names. With ``lease`` (see
:mod:`layered_gan_jax.run.lease`) the loop is the one writer of the checkpoint folder while it runs.
"""

import time
from typing import Callable, Dict, Iterator, Mapping, Optional, Tuple

import jax
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions

from layered_gan_jax import console, errors
from layered_gan_jax.errors import NonFiniteLossError, Preempted
from layered_gan_jax.run.lease import Lease
from layered_gan_jax.training.preemption import PreemptionGuard


def metric_writer(logdir: str) -> metric_writers.MetricWriter:
  """clu's writer of ``logdir``'s event files and log lines; log lines only on processes other
  than the first. A failed write raises :class:`~layered_gan_jax.errors.WriteFailed`."""
  return _WriteFailures(
    metric_writers.create_default_writer(logdir, just_logging=jax.process_index() > 0), logdir
  )


class _WriteFailures:
  """A clu writer whose failed writes (disk full, no permission, ...) raise WriteFailed: each
  of its methods is the wrapped writer's, called under ``errors.writing``."""

  def __init__(self, writer: metric_writers.MetricWriter, logdir: str):
    self._writer, self._logdir = writer, logdir

  def __getattr__(self, name: str):
    method = getattr(self._writer, name)
    return lambda *args, **kwargs: self._call(method, *args, **kwargs)

  def _call(self, method, *args, **kwargs):
    with errors.writing("an event file", self._logdir):
      return method(*args, **kwargs)


def writer_lease(config, directory: str, mode: str) -> Lease:
  """The writer lease of the checkpoint folder ``directory``, taken now (see
  :mod:`layered_gan_jax.run.lease`; the first process holds it for a multi-host job)."""
  return Lease(
    directory, mode, config.runtime.lease_stale_after_s, enabled=jax.process_index() == 0
  ).acquire()


class TrainLoop:
  """See the module docstring. ``console_keys`` maps the progress line's labels to metric
  names (``{"loss": "encoder_loss"}``)."""

  def __init__(
    self,
    name: str,
    ckpt,
    writer,
    max_steps: int,
    log_every_steps: int,
    save: Callable[[int], int],
    console_keys: Mapping[str, str],
    eta: Optional[Callable[[int, float], Tuple[float, bool]]] = None,
    lease: Optional[Lease] = None,
  ):
    self.name, self.ckpt, self.writer = name, ckpt, writer
    self.lease = lease  # Held from __enter__ to __exit__, renewed at log and save steps.
    self.max_steps, self.log_every_steps = int(max_steps), int(log_every_steps)
    self._save, self._console_keys = save, dict(console_keys)
    self._eta = eta  # (step, seconds per step) -> (seconds left, FLOP-scaled); None: linear.
    self.last_saved: Optional[int] = ckpt.latest_step()
    self._guard = PreemptionGuard(ckpt)
    self._report = periodic_actions.ReportProgress(num_train_steps=self.max_steps, writer=writer)
    self._pending = []
    self._timer, self._images, self._steps = time.time(), 0, 0

  def __enter__(self) -> "TrainLoop":
    self._guard.__enter__()  # From here on SIGTERM stops cleanly.
    return self

  def __exit__(self, *exc):
    try:
      return self._guard.__exit__(*exc)
    finally:
      if self.lease is not None:
        self.lease.release()

  def renew(self, check: bool = False) -> None:
    """Renews the writer lease (after a compile, at log and checkpoint steps; see
    :meth:`Lease.renew`)."""
    if self.lease is not None:
      self.lease.renew(check)

  def itstime(self, step: int, every: int) -> bool:
    """Whether a periodic action runs after iteration ``step``: every ``every`` steps and at
    the last."""
    return step % every == 0 or step == self.max_steps

  def steps(self, start: int, end: Optional[int] = None) -> Iterator[int]:
    """The iterations ``start .. end - 1`` (``end``: ``max_steps``). Before each, every process
    asks whether to stop; if so, a checkpoint of the step reached is saved and ``Preempted``
    raised."""
    for step, _ in self.groups(start, end):
      yield step

  def groups(
    self,
    start: int,
    end: Optional[int] = None,
    size: int = 1,
    ends_after: Callable[[int], bool] = lambda step: False,
  ) -> Iterator[Tuple[int, int]]:
    """The iterations ``start .. end - 1`` in groups ``(first, count)`` of at most ``size``,
    for steps that run several iterations per call. A group never runs past an iteration after
    which something happens: a log step (the loop's own) or ``ends_after(step)`` (the caller's
    samples, checkpoints, FID points), so every such action sees the state of its own step.
    Every process asks whether to stop before each iteration of a group, in order, before the
    group runs: a stop agreed for an iteration inside it (a preemption notice; the service
    agrees on one past the furthest iteration any process has asked about) shortens the group
    to end there, and the next group saves and raises ``Preempted`` as :meth:`steps` does."""
    end = self.max_steps if end is None else end
    step = start
    while step < end:
      count = 0
      while step + count < end and count < size:
        if self._guard.stop_at(step + count):
          break
        count += 1
        if self.itstime(step + count, self.log_every_steps) or ends_after(step + count):
          break
      if count == 0:
        if self.last_saved != step and step > 0:
          self.save(step)
        self.finish()
        raise Preempted(
          f"{self.name} training stopped at step {step} after SIGTERM "
          f"(checkpoint {self.last_saved}); rerun the same command to resume"
        )
      yield step, count
      step += count

  def exclude(self, seconds: float) -> None:
    """Leaves ``seconds`` spent outside the iterations (a stage's compile) out of the step
    time and images/s of the current log window."""
    self._timer += seconds

  def save(self, step: int) -> int:
    self.renew(check=True)  # A writer whose lease was taken over stops before writing.
    self.last_saved = self._save(step)
    return self.last_saved

  def save_unless_saved(self, step: int) -> None:
    if self.last_saved != step:
      self.save(step)

  def record(
    self,
    step: int,
    metrics,
    images: int,
    extra: Optional[Callable[[], Dict[str, float]]] = None,
    count: int = 1,
  ) -> Optional[Dict[str, float]]:
    """Adds the metrics (device arrays) of the ``count`` iterations that end with iteration
    ``step`` (``count`` > 1: each metric stacked, one value per iteration) and their
    ``images``. At a log step, or when a stop is requested, their means over the iterations
    since the last log step (with ``extra()`` and ``images_per_s``) are checked, written and
    printed, and returned."""
    self._pending.append(metrics)
    self._images += images
    self._steps += count
    self._report(step)
    if not (self.itstime(step, self.log_every_steps) or self._guard.requested):
      return None
    pending = jax.device_get(self._pending)
    self._pending = []
    summary = {
      k: float(np.mean(np.concatenate([np.asarray(m[k], np.float64).reshape(-1) for m in pending])))
      for k in pending[0]
    }
    bad = [k for k, v in summary.items() if not np.isfinite(v)]
    if bad:
      raise NonFiniteLossError(
        f"non-finite {self.name} loss at step {step} ({', '.join(bad)}); training stopped "
        "(a lower learning rate, or a higher gradient penalty, may help). "
        + errors.last_good(self.last_saved, self.ckpt.directory)
      )
    elapsed = time.time() - self._timer
    summary.update(extra() if extra is not None else {})
    summary["images_per_s"] = self._images / elapsed
    self.renew()
    self.writer.write_scalars(step, summary)
    logging.info(
      "%s",
      console.progress_line(
        self.name,
        step,
        self.max_steps,
        {label: summary[key] for label, key in self._console_keys.items()},
        summary["images_per_s"],
        elapsed / self._steps,
        None if self._eta is None else self._eta(step, elapsed / self._steps),
      ),
    )
    self._timer, self._images, self._steps = time.time(), 0, 0
    return summary

  def finish(self) -> None:
    """Flushes the writer and closes the checkpointer (waiting for a save in flight)."""
    self.writer.flush()
    self.ckpt.close()
