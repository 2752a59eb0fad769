#!/bin/bash
# configs/car.py at 128 px, batch 32, fp32 on one GPU: does the training iteration run within
# 24 GiB and 16 GiB, at what speed, with and without train.remat_penalty; the official code's
# allocator peak at the same setting beside it; XLA's memory analysis of the step and its parts.
#
# Run from the repository root on the lent GPU machine, as gpu_throughput.sh (same .whl/ and
# .devrun/ folders). The cap is XLA_PYTHON_CLIENT_MEM_FRACTION of the card's memory: the
# process preallocates that much and fails with RESOURCE_EXHAUSTED beyond it. One compilation
# cache for all runs, so only the first run of each program pays for its compile.
# Writes $OUT/<run>.json and .log, $OUT/official_r128.log, $OUT/step_memory_128.json and
# $OUT/memory_log.txt (one line per run: exit status, images/s, the allocator's peak).
set -u
OUT=${OUT:-memory_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
L=$OUT/memory_log.txt
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$L" 2>&1 || exit 1
  export PYTHONPATH=/tmp/site
fi
# CONFIG, RES, BATCH and TOTAL_MIB may be set for a try on a CPU machine (tiny settings).
CONFIG=${CONFIG:-configs/car.py} RES=${RES:-128} BATCH=${BATCH:-32}
TOTAL_MIB=${TOTAL_MIB:-$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)}
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $TOTAL_MIB MiB; $CONFIG at $RES px, batch $BATCH" >> "$L"
fraction() { python3 -c "print(f'{$1 * 1024 / $TOTAL_MIB:.4f}')"; }  # GiB -> share of the card
RUN="python3 -m benchmarks.device.no_tf_launch -m benchmarks.throughput --config=$CONFIG"
RUN="$RUN --config.runtime.xla_cpu_kernels=xla --resolution=$RES --batch=$BATCH --steps=6 --warmup=2"
RUN="$RUN --distinct_batches=2 --pipeline_batches=2 --pipeline_warmup=1 --matmul_size=4096"
RUN="$RUN --matmul_reps=3"
ours() {  # name, cap in GiB (0 = none), remat (true/false)
  local name=$1 cap=$2 remat=$3 env=()
  [ "$cap" != 0 ] && env=(XLA_PYTHON_CLIENT_MEM_FRACTION="$(fraction "$cap")")
  env "${env[@]}" timeout "${RUN_TIMEOUT:-100}" $RUN --config.train.remat_penalty="$remat" \
    --json="$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "$name cap=${cap}GiB remat=$remat rc=$? $(grep -o '"images_per_s": [0-9.]*' \
    "$OUT/$name.json" 2>/dev/null) $(grep -o '"peak_memory_bytes": [0-9]*' "$OUT/$name.json" \
    2>/dev/null) $(grep -o 'RESOURCE_EXHAUSTED[^.]*' "$OUT/$name.log" | head -1)" >> "$L"
}
ours r128_uncapped 0 false
ours r128_cap24 24 false
ours r128_cap16 16 false
ours r128_remat_uncapped 0 true
ours r128_remat_cap16 16 true
timeout 120 python3 -m benchmarks.device.ref_bench_cuda \
  --mirror .devrun/ref_mirror.git --resolution "$RES" --batch "$BATCH" --steps 6 --warmup 2 \
  > "$OUT/official_r128.log" 2>&1
echo "official r128 rc=$? $(grep -o 'official_peak_bytes [0-9]*' "$OUT/official_r128.log")" >> "$L"
timeout "${RUN_TIMEOUT:-100}" python3 -m benchmarks.device.no_tf_launch -m benchmarks.step_memory \
  --config="$CONFIG" --config.runtime.xla_cpu_kernels=xla --resolution="$RES" --batch="$BATCH" \
  --json="$OUT/step_memory_128.json" > "$OUT/step_memory_128.log" 2>&1
echo "step_memory rc=$?" >> "$L"
cat "$L"
