#!/bin/bash
# GPU throughput of the training iteration, ours and the official code, on one machine.
#
# Run from the repository root on a CUDA machine whose Python has jax[cuda], flax, optax,
# orbax-checkpoint and torch but no TensorFlow (the image of the team's lent GPU machines).
# Needs, in ignored folders of the checkout:
#   .whl/       wheels of clu and ml_collections (pip download --no-deps ... -d .whl)
#   .devrun/    ref_mirror.git (git clone --mirror https://github.com/adambielski/perturbed-seg),
#               which benchmarks/official_code.py loads the official code from
# Writes under $OUT (default ./gpu_out): one JSON + log per setting of ours, one log per
# setting of the official code. Summarize with:
#   python -m benchmarks.device.gpu_summary --dir=$OUT --json=benchmarks/results/gpu_h200.json
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
RUN="python3 -m benchmarks.device.no_tf_launch -m benchmarks.throughput --config=configs/car.py"
# XLA:CPU kernel flags are for CPUs; the car config's default (ynn) would add them.
RUN="$RUN --config.runtime.xla_cpu_kernels=xla --matmul_size=8192"
ours() {  # name, timeout, args...
  local name=$1 to=$2; shift 2
  timeout "$to" $RUN --json="$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$?"; tail -1 "$OUT/$name.log"
}
ours r64_fp32 150 --resolution=64 --batch=32 --steps=10 --warmup=3
ours r128_fp32 150 --resolution=128 --batch=32 --steps=8 --warmup=2 --pipeline_batches=4 --distinct_batches=2
ours r64_bf16 150 --resolution=64 --batch=32 --steps=8 --warmup=2 --pipeline_batches=4 --distinct_batches=2 --dtype=bfloat16
ours r128_bf16 150 --resolution=128 --batch=32 --steps=8 --warmup=2 --pipeline_batches=4 --distinct_batches=2 --dtype=bfloat16
for r in 64 128; do
  timeout 120 python3 -m benchmarks.device.ref_bench_cuda \
    --mirror .devrun/ref_mirror.git --resolution $r --batch 32 --steps 10 --warmup 3 \
    > "$OUT/official_r$r.log" 2>&1
  echo "official r$r rc=$?"; tail -1 "$OUT/official_r$r.log"
done
