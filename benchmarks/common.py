"""Helpers shared by the benchmark scripts."""

import platform


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
