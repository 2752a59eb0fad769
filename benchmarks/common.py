"""Helpers shared by the benchmark scripts: machine description, config files and --set."""

import ast
import importlib.util
import os
import platform
import sys
from typing import Any, Dict, List


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
  return (f"{platform.node()} | {cpu_model()} | {os.cpu_count()} CPUs{devices} | "
          f"{platform.platform()}")


def load_config(path: str):
  """``get_config()`` of a config file (e.g. configs/synthetic.py), imported by its path."""
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise SystemExit(f"error: config file {path}: no such file")
  spec = importlib.util.spec_from_file_location("benchmark_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _coerce(old: Any, value: Any) -> Any:
  if isinstance(old, bool) or old is None:
    return value
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(old, tuple) and isinstance(value, list):
    return tuple(value)
  return value


def apply_overrides(config, overrides: Dict[str, Any]):
  """Sets dotted keys (``'perturb.shift': 0.0``) of an ml_collections config in place."""
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      if p not in node:
        raise KeyError(f"config override {dotted!r}: no field {p!r}")
      node = node[p]
    if leaf not in node:
      raise KeyError(f"config override {dotted!r}: no field {leaf!r}")
    node[leaf] = _coerce(node[leaf], value)
  return config


def parse_set(items: List[str]) -> Dict[str, Any]:
  """``['a.b=1', 'c=(1,2)', 'd=text']`` -> {'a.b': 1, 'c': (1, 2), 'd': 'text'}."""
  out = {}
  for item in items or []:
    key, sep, raw = item.partition("=")
    if not sep:
      raise SystemExit(f"error: --set {item!r} must look like key=value")
    try:
      out[key.strip()] = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      out[key.strip()] = raw
  return out


def gan_checkpoints(gan_workdir: str) -> str:
  """The checkpoints/ folder of a trained GAN's workdir; exits with a one-line error if none."""
  path = os.path.join(os.path.abspath(gan_workdir), "checkpoints")
  if not os.path.isdir(path):
    raise SystemExit(f"error: {gan_workdir} has no checkpoints/ folder: train a GAN there "
                     "first (python main.py --config=configs/synthetic.py --workdir=DIR)")
  return path
