"""Runs the team's CPU harness for the official code (``shared/tools/ref_bench.py``) on CUDA.

The harness pins the device to the CPU; this loads its source, moves the model to ``cuda:0`` and
synchronizes the GPU at each iteration boundary, so the per-iteration wall times it records are
GPU times, then runs it with the same arguments, and prints the allocator's peak at the end
(``official_peak_bytes``):

  python -m benchmarks.device.ref_bench_cuda --harness=../shared/tools/ref_bench.py \
      --mirror GIT_DIR --resolution 64 --batch 32 --steps 10 --warmup 3

The official training loop already reads ``.item()`` of its losses every iteration, so the GPU is
idle at the iteration boundaries anyway; the explicit synchronization only makes that certain.
"""

import sys

PATCHES = (
  ("device = torch.device('cpu')", "device = torch.device('cuda:0')"),
  (
    "            now = time.perf_counter()\n            if i > 0:",
    "            __import__('torch').cuda.synchronize()\n"
    "            now = time.perf_counter()\n            if i > 0:",
  ),
  (
    "        self.ends.append(time.perf_counter())\n        self._report(self.n_iter - 1)",
    "        __import__('torch').cuda.synchronize()\n"
    "        self.ends.append(time.perf_counter())\n        self._report(self.n_iter - 1)",
  ),
)


def main():
  args = [a for a in sys.argv[1:] if not a.startswith("--harness=")]
  paths = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--harness=")]
  if len(paths) != 1:
    raise SystemExit("error: give the harness once, e.g. --harness=../shared/tools/ref_bench.py")
  with open(paths[0]) as f:
    source = f.read()
  for old, new in PATCHES:
    if source.count(old) != 1:
      raise SystemExit(
        f"error: {paths[0]} is not the expected harness ({old.strip()[:40]!r} "
        "not found exactly once)"
      )
    source = source.replace(old, new)
  sys.argv = [paths[0]] + args
  namespace = {"__name__": "__main__", "__file__": paths[0]}
  try:
    exec(compile(source, paths[0], "exec"), namespace)  # pylint: disable=exec-used
  finally:  # The allocator's peak of the whole run (model, optimizer, activations).
    import torch  # pylint: disable=g-import-not-at-top

    if torch.cuda.is_available():
      print(
        f"official_peak_bytes {torch.cuda.max_memory_allocated()} "
        f"(torch.cuda.max_memory_allocated)",
        flush=True,
      )


if __name__ == "__main__":
  main()
