"""Process-level XLA options that must be set before JAX creates its backends.

``config.runtime.xla_cpu_kernels`` picks the kernels XLA:CPU uses for convolutions, matrix
products and reductions:

* ``"xla"``: XLA's defaults.
* ``"ynn"``: route dot/convolution and reduction fusions to the YNNPACK library
  (``--xla_cpu_experimental_ynn_fusion_type=dot,reduce``) and use the concurrency-optimized
  thunk scheduler. Faster at the reference widths, slower with the narrow CPU models of
  ``configs/synthetic.py``, so it is on in the reference-width configs only (figures:
  docs/performance.md).

Only ``xla_cpu_*`` flags are touched, so GPU and TPU runs are unaffected. Flags already present
in ``XLA_FLAGS`` are left alone (the environment wins).
"""

import os
from typing import List

from absl import logging

YNN_FLAGS = {
  "--xla_cpu_experimental_ynn_fusion_type": "dot,reduce",
  "--xla_cpu_enable_concurrency_optimized_scheduler": "true",
}
KERNELS = ("xla", "ynn")


def _backends_initialized() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

    return bool(xla_bridge.backends_are_initialized())
  except Exception:  # pylint: disable=broad-except
    return False


def configure_xla_cpu(kernels: str) -> List[str]:
  """Adds the XLA:CPU flags of ``kernels`` to ``XLA_FLAGS``; returns the flags it added.

  Must run before the first use of a JAX device; later it only logs a warning.
  """
  if kernels not in KERNELS:
    raise ValueError(f"runtime.xla_cpu_kernels={kernels!r}; choose one of {KERNELS}")
  if kernels == "xla":
    return []
  current = os.environ.get("XLA_FLAGS", "")
  present = {item.split("=", 1)[0] for item in current.split()}
  added = [f"{k}={v}" for k, v in YNN_FLAGS.items() if k not in present]
  if not added:
    return []
  if _backends_initialized():
    logging.warning(
      "runtime.xla_cpu_kernels=%r ignored: JAX's backends already exist (set it "
      "before the first JAX computation, or put %s in XLA_FLAGS)",
      kernels,
      " ".join(added),
    )
    return []
  os.environ["XLA_FLAGS"] = " ".join([current] + added).strip()
  logging.info("XLA_FLAGS += %s", " ".join(added))
  return added
