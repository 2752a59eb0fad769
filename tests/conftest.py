"""Shared pytest setup: keep the CPU tests small and reproducible."""

import os
import tempfile

# TensorFlow (used by tf.data / tfds / clu) must never grab an accelerator or spam logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One persistent XLA compilation cache per test session, shared with the subprocesses the tests
# start: many tests compile the same tiny training step.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The tests compile many small programs and run each for a few steps, so XLA:CPU's compile
# time is most of the suite's: LLVM at optimisation level 0 compiles about 2.3x faster. It
# changes how fast the code runs, not what it computes; speed is measured by benchmarks/, never
# by tests. Subprocesses inherit it (tests that set XLA_FLAGS for one append to it).
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
  ).strip()

# The files that take longest, longest first, so that the two xdist workers of the CI command
# (--dist=loadfile: one whole file at a time) start on them and finish together; the others
# follow in their usual order. pyproject.toml turns off xdist's own reordering by test count.
_LONGEST_FIRST = (
  "test_train.py",
  "test_segmentation.py",
  "test_gcs.py",
  "test_reliability.py",
  "test_official_parity.py",
  "test_main.py",
  "test_notebook.py",
  "test_runtime.py",
  "test_benchmarks.py",
  "test_emergence_smoke.py",
  "test_train_step.py",
  "test_generator.py",
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: files stay whole.
