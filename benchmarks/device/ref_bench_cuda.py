"""The official training iteration timed on CUDA (``benchmarks/official_timing.py`` with the
models on ``cuda:0``), then the allocator's peak of the whole run (``official_peak_bytes``):

  python -m benchmarks.device.ref_bench_cuda --mirror=GIT_DIR --resolution=64 --batch=32 \
      --steps=10 --warmup=3

The timing waits for the GPU (``torch.cuda.synchronize``) before each clock reading: at each
iteration boundary and when the critic's Adam step returns. The official loop reads ``.item()``
of its losses every iteration, so the GPU is idle at the boundaries anyway; the waits make the
per-iteration times GPU times for certain. Arguments are those of ``official_timing.py``.
"""

import sys

from benchmarks import official_timing


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    return official_timing.main(["--device=cuda:0", *argv])
  finally:  # The peak of the whole run: models, optimizers, activations.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
      print(
        f"official_peak_bytes {torch.cuda.max_memory_allocated()} "
        "(torch.cuda.max_memory_allocated)",
        flush=True,
      )


if __name__ == "__main__":
  sys.exit(main())
