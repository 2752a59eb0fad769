#!/bin/bash
# The scale experiment on one GPU machine: benchmarks/device/scale.py drive, in one command of
# about 9 minutes (the loop benchmark, SECONDS_BUDGET for the driver, plus the install).
#
# Run from the repository root on a CUDA machine whose Python has jax[cuda], flax, optax,
# orbax-checkpoint and opencv but no TensorFlow (the image of the team's lent GPU machines).
# Needs, in ignored folders of the checkout:
#   .whl/      wheels of clu and ml_collections (pip download --no-deps ... -d .whl)
#   .devrun/reference_segmenter/  (optional) the cached reference segmenter (.npz) of
#              benchmarks/emergence.py at 32 px, so that the GPU does not train it again
# Tries CUDA MPS (several processes' kernels on the GPU at once) and goes on without it if a
# small JAX program does not run under it. Writes under $OUT: scale.json, scale.md, log.txt and
# the sample grids; summarize them here with
#   python -m benchmarks.device.scale summarize --dir=RETURNED_FILES
set -u
OUT=${OUT:-scale_out}
RUNS=${RUNS:-/tmp/scale_runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
L=$OUT/log.txt
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$L" 2>&1 || exit 1
  export PYTHONPATH=/tmp/site
fi
export SCALE_MPS=off
if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d >> "$L" 2>&1 && timeout 60 python3 -c \
      "import jax, jax.numpy as jnp; print(jax.devices(), float(jnp.ones(8).sum()))" >> "$L" 2>&1
  then
    export SCALE_MPS=on
  else
    echo quit | nvidia-cuda-mps-control >> "$L" 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
fi
{ echo "== $(date -u) MPS $SCALE_MPS"; nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader; python3 -c "import jax; print('jax', jax.__version__)"; } >> "$L" 2>&1
# The training loop against its compiled step at the recipe's shapes, before and after the loop
# work (no device prefetch / two batches ahead / 4 iterations per call); the step's compile is
# shared through JAX's compilation cache; each setting's figures are written as they come.
JAX_COMPILATION_CACHE_DIR=/tmp/loop_jax_cache timeout "${LOOP_SECONDS:-120}" python3 -m \
  benchmarks.device.no_tf_launch -m benchmarks.loop_overhead --preset=scale --iterations=400 \
  --steps_per_call=4 --json="$OUT/loop_overhead.json" >> "$L" 2>&1
CACHE=()
[ -d .devrun/reference_segmenter ] && CACHE=(--reference_cache=.devrun/reference_segmenter)
python3 -m benchmarks.device.no_tf_launch -m benchmarks.device.scale drive --out="$OUT" \
  --runs_dir="$RUNS" --seconds="${SECONDS_BUDGET:-380}" "${CACHE[@]}" \
  --device="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), MPS $SCALE_MPS" \
  "$@"
[ "$SCALE_MPS" = on ] && echo quit | nvidia-cuda-mps-control
exit 0
