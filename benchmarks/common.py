"""Helpers shared by the benchmark scripts: machine description, config files and their
--config.FIELD=VALUE overrides."""

import os
import platform
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> str:
  """One line for the results files: host, CPU, CPU count, JAX's devices (when the script
  uses JAX) and the platform."""
  devices = ""
  if "jax" in sys.modules:
    try:
      jax = sys.modules["jax"]
      devices = f" | JAX devices: {jax.device_count()} x {jax.devices()[0].device_kind}"
    except Exception:  # pylint: disable=broad-except
      devices = " | JAX devices: ?"
  return (
    f"{platform.node()} | {cpu_model()} | {os.cpu_count()} CPUs{devices} | {platform.platform()}"
  )


def command_line(module: str, argv: Optional[Sequence[str]] = None) -> str:
  """The command that reruns this benchmark from the repository root, for the results files:
  ``python -m MODULE ARGS`` (the modules import ``benchmarks``, so not ``python FILE.py``)."""
  args = sys.argv[1:] if argv is None else list(argv)
  return shlex.join(["python", "-m", module] + args)


def load_config(path: str, overrides: Sequence[str] = ()):
  """``(config, applied)``: ``get_config()`` of a config file (e.g. configs/synthetic.py) with
  command-line overrides applied the way ``main.py`` applies them (``--config.FIELD=VALUE``,
  ml_collections' own parsing and type checks); ``applied`` maps each overridden field to its
  parsed value (for the results files)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise SystemExit(f"error: config file {path}: no such file")
  bad = [a for a in overrides if not a.startswith("--config.") or "=" not in a]
  if bad:
    raise SystemExit(
      f"error: unrecognised arguments {' '.join(bad)}; config overrides are "
      "--config.FIELD=VALUE, as for main.py"
    )
  argv = ["benchmark", f"--config={path}", *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  try:
    flag_values(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
    raise SystemExit(f"error: {' '.join(overrides)}: {e}") from e
  config = flag_values.config
  applied = {}
  for arg in overrides:
    field = arg[len("--config.") :].split("=", 1)[0]
    node = config
    for name in field.split("."):
      node = node[name]
    applied[field] = node
  return config, applied


def apply_overrides(config, overrides: Dict[str, Any]):
  """Sets dotted fields (``{'perturb.shift': 0.0}``) of an ml_collections config in place: the
  benchmarks' own variants of a config."""
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      if p not in node:
        raise KeyError(f"config override {dotted!r}: no field {p!r}")
      node = node[p]
    if leaf not in node:
      raise KeyError(f"config override {dotted!r}: no field {leaf!r}")
    node[leaf] = value
  return config


def selected(names: str, table, what: str) -> List[str]:
  """The comma-separated ``names``, each a key of ``table``; exits with a one-line error
  naming the unknown ones."""
  chosen = [n for n in names.split(",") if n]
  unknown = [n for n in chosen if n not in table]
  if unknown:
    sys.exit(f"error: unknown {what}(s) {unknown}; choose from {sorted(table)}")
  return chosen


def gan_checkpoints(gan_workdir: str) -> str:
  """The checkpoints/ folder of a trained GAN's workdir; exits with a one-line error if none."""
  path = os.path.join(os.path.abspath(gan_workdir), "checkpoints")
  if not os.path.isdir(path):
    raise SystemExit(
      f"error: {gan_workdir} has no checkpoints/ folder: train a GAN there "
      "first (python main.py --config=configs/synthetic.py --workdir=DIR)"
    )
  return path
