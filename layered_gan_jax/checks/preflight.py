"""What a mode needs beyond its config, checked before anything compiles or is written.

``main.py`` runs, in this order, and stops at the first problem with one line (a
:class:`~layered_gan_jax.errors.ConfigError` or a
:class:`~layered_gan_jax.errors.DataError`):

1. before JAX starts: the flags of the mode (:func:`check_flags`), the config
   (:mod:`layered_gan_jax.checks.validate`, with the data's paths and names), and the
   checkpoints the mode reads or resumes (:func:`check_workdir`: they exist and hold the
   configured model; read as JSON, nothing restored);
2. once the devices are known: the batches against the device count, and the first global
   batch of the training data (:func:`check_first_batch`: decoded under
   ``data.on_bad_file``).

Nothing here writes: a refused command leaves the workdir as it was.
"""

import re
from typing import List, Optional

from etils import epath

from layered_gan_jax.checks.compatibility import check_saved_encoder, check_saved_model
from layered_gan_jax.checks.validate import stage_batch_sizes
from layered_gan_jax.errors import ConfigError, DataError
from layered_gan_jax.run.layout import (
  ENCODER_DIR,
  GAN_DIR,
  NETWORKS,
  SEGMENTER_DIR,
  complete_steps,
  read_saved,
)

# The modes that read a trained GAN (pipeline trains it first).
NEEDS_GAN = ("train_encoder", "train_segmenter", "evaluate", "sample", "segment", "fid")


def check_bucket(path: str, flag: str) -> None:
  """For an object-store path (``gs://bucket/...``): its bucket exists and may be read. A
  local path passes (its folders are made)."""
  scheme, _, rest = str(path).partition("://")
  if scheme not in ("gs", "s3") or not rest:
    return
  bucket = f"{scheme}://{rest.split('/', 1)[0]}"
  try:
    found = epath.Path(bucket).exists()
  except Exception as e:  # pylint: disable=broad-except
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, PermissionError) or re.search(r"403|forbidden|permission", text, re.I):
      raise ConfigError(
        f"{flag}={path}: no permission to read the bucket {bucket} ({text.splitlines()[0]}); "
        "use credentials that may read and write it (gcloud auth application-default login)"
      ) from e
    raise ConfigError(
      f"{flag}={path}: cannot reach the bucket {bucket} ({text.splitlines()[0]}); check "
      "this machine's network and credentials (gcloud auth application-default login), or use "
      f"a local {flag}"
    ) from e
  if not found:
    raise ConfigError(
      f"{flag}={path}: the bucket {bucket} does not exist (or these credentials cannot see "
      f"it); create it (gcloud storage buckets create {bucket}) or fix {flag}"
    )


def check_flags(
  mode: str,
  workdir: Optional[str],
  output: Optional[str],
  input_path: Optional[str],
  num_samples: int,
) -> None:
  """The command-line flags of ``mode`` (cheap: no JAX, nothing read but the input's path)."""
  if not workdir:
    raise ConfigError(
      "--workdir is missing; give the run's folder (local or gs://...), e.g. --workdir=/tmp/run"
    )
  check_bucket(workdir, "--workdir")
  if output:
    check_bucket(output, "--output")
  path = epath.Path(workdir)
  blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
  if blocking is not None:
    raise ConfigError(
      f"--workdir={workdir}: {blocking} is a file, not a folder; give a folder "
      "(a new one is made) or the folder of an earlier run"
    )
  if mode in ("sample", "segment") and not output:
    raise ConfigError(f"--mode={mode} needs --output=DIR (a folder for the PNG files)")
  if mode == "sample" and num_samples <= 0:
    raise ConfigError(f"--num_samples={num_samples} must be > 0")
  if mode == "segment":
    if not input_path:
      raise ConfigError("--mode=segment needs --input=FILE_OR_DIR")
    src = epath.Path(input_path)
    if not src.exists():
      raise ConfigError(f"--input={input_path} does not exist")
    if src.is_dir():
      out = epath.Path(output)
      if out == src or src in out.parents:
        raise ConfigError(
          f"--output={output} is inside the input folder {input_path}; choose "
          "a folder outside it (segment never writes into its inputs)"
        )


def last_checkpoints(workdir: str) -> str:
  """``'GAN step 8 (DIR/checkpoints)'``, one part per trained network of ``workdir`` (what
  a stop names as what is kept), or ``'none'``."""
  parts = []
  for name, sub in NETWORKS:
    directory = epath.Path(workdir) / sub
    try:
      steps = complete_steps(directory)
    except OSError:  # The folder cannot be listed (the cause of the stop, perhaps).
      steps = []
    if steps:
      parts.append(f"{name} step {steps[-1]} ({directory})")
  return ", ".join(parts) or "none"


def _latest_config(workdir: str, sub: str):
  directory = epath.Path(workdir) / sub
  steps = complete_steps(directory)
  if not steps:
    return directory, None, None
  return directory, steps[-1], read_saved(directory, steps[-1], "config")


def check_workdir(config, workdir: str, mode: str) -> None:
  """The checkpoints ``mode`` resumes or reads: present, and holding the configured model."""
  directory, step, saved = _latest_config(workdir, GAN_DIR)
  if (
    saved is None
    and mode in NEEDS_GAN
    and not (mode == "segment" and config.segment.route == "distilled")
  ):
    raise ConfigError(
      f"no complete GAN checkpoint in {directory}; train one first with "
      "--mode=train (or point --workdir at a trained run)"
    )
  if saved is not None and mode != "segment":
    check_saved_model(saved, config, directory, step)
  if mode in ("train_encoder", "evaluate", "segment"):
    enc_dir, enc_step, enc_saved = _latest_config(workdir, ENCODER_DIR)
    if enc_saved is not None:
      check_saved_encoder(enc_saved, config, enc_dir, enc_step)
  if mode in ("evaluate", "segment"):
    route = config.segment.route
    sub = SEGMENTER_DIR if route == "distilled" else ENCODER_DIR
    if not complete_steps(epath.Path(workdir) / sub):
      trained = [
        r
        for r, s in (("distilled", SEGMENTER_DIR), ("encoder", ENCODER_DIR))
        if complete_steps(epath.Path(workdir) / s)
      ]
      fix = "--mode=train_segmenter" if route == "distilled" else "--mode=train_encoder"
      raise ConfigError(
        f"segment.route={route!r} has no trained checkpoint in {workdir} "
        f"(trained: {', '.join(trained) or 'none'}); train it with {fix} or "
        "choose another --config.segment.route"
      )


# The checkpoint folder each training mode writes (pipeline: all three, one after another).
WRITES = {
  "train": (GAN_DIR,),
  "train_encoder": (ENCODER_DIR,),
  "train_segmenter": (SEGMENTER_DIR,),
  "pipeline": (GAN_DIR, ENCODER_DIR, SEGMENTER_DIR),
}


def check_writers(config, workdir: str, mode: str) -> None:
  """No other live training writes the checkpoint folders ``mode`` trains into (their writer
  leases, :mod:`layered_gan_jax.run.lease`; read only)."""
  from layered_gan_jax.run import lease  # pylint: disable=g-import-not-at-top

  for sub in WRITES.get(mode, ()):
    lease.Lease(epath.Path(workdir) / sub, mode, config.runtime.lease_stale_after_s).check()


def check_step(workdir: str, mode: str, step: Optional[int]) -> None:
  """``--step`` of ``--mode=fid`` names a complete GAN checkpoint."""
  if mode != "fid" or step is None:
    return
  directory = epath.Path(workdir) / GAN_DIR
  steps = complete_steps(directory)
  if step not in steps:
    raise ConfigError(
      f"--step={step}: no complete GAN checkpoint of that step in {directory} "
      f"(steps: {', '.join(map(str, steps)) or 'none'}); give one of them, or "
      "leave --step out for the latest"
    )


def fid_needed(config, mode: str) -> bool:
  """Whether ``mode`` computes FID / KID with this config."""
  return (
    mode == "fid"
    or (mode in ("train", "pipeline") and config.train.fid_every_images > 0)
    or (mode in ("evaluate", "pipeline") and config.eval.fid_samples > 0)
  )


def check_fid_weights(config, mode: str) -> None:
  """The FID network's weights, where the mode needs them: ``eval.fid_weights`` readable and
  converted from the expected network, or the host's cache (fetched and converted at first
  use)."""
  if fid_needed(config, mode):
    from layered_gan_jax.nets import inception_weights  # pylint: disable=g-import-not-at-top

    inception_weights.load(config.eval.fid_weights)


def check_first_batch(config, mode: str) -> None:
  """Builds and decodes the first global batch the mode trains on (under
  ``data.on_bad_file``); a source that cannot fill it is refused with a hint for the policy
  in force. No full scan: the batch's own examples, and with 'skip' the replacements."""
  if mode not in ("train", "train_encoder", "pipeline"):
    return
  from layered_gan_jax import parallel  # pylint: disable=g-import-not-at-top
  from layered_gan_jax.data import train_input  # pylint: disable=g-import-not-at-top

  if mode == "train_encoder":
    resolution, batch = config.train.resolution, config.encoder.batch_size
  else:
    resolution = config.train.start_resolution
    batch = stage_batch_sizes(config)[resolution]
  policy = config.data.on_bad_file
  sources = config.data.get("sources")
  where = (
    ", ".join(f"{s[0]} {s[1]}".strip() for s in sources)
    if sources
    else config.data.path or config.data.name
  )
  try:
    with train_input.train_iterator(
      config.data,
      resolution=resolution,
      batch_size=parallel.per_process_batch(batch),
      seed=config.seed,
    ) as iterator:
      next(iterator)
  except DataError as e:
    first = str(e).splitlines()[0].replace(" (see the warnings above)", "")
    first = first.replace("; see the warnings above for the files and the reason", "")
    if policy == "error":  # The message names the file and says to delete it or skip it.
      raise DataError(f"the training data cannot fill its first batch: {first}") from None
    raise DataError(
      f"the training data cannot fill its first batch of {batch}: "
      f"{first.rstrip('.')}; data.on_bad_file='skip' already leaves unreadable "
      f"files out, so point the data at readable images (now: {where})"
    ) from None


def notes(config, mode: str) -> List[str]:
  """What the run should say first (logged once the checks pass): which CUB split is used."""
  from absl import logging  # pylint: disable=g-import-not-at-top

  from layered_gan_jax.data import config as data_config  # pylint: disable=g-import-not-at-top

  said = []
  datas = [config.data] if mode in ("train", "train_encoder", "pipeline") else []
  if mode in ("evaluate", "pipeline"):
    datas.append(data_config.eval_data_config(config))
  for data in datas:
    note = data_config.cub_split_note(data)
    if note and note[0] not in said:
      (logging.warning if note[1] else logging.info)("%s", note[0])
      said.append(note[0])
  return said
