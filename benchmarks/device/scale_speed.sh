#!/bin/bash
# Why one 32 px training process of the scale experiment runs at ~2,500 img/s on an H200: the
# training iteration of configs/synthetic.py at 32 px timed alone (benchmarks.throughput,
# each step synchronised), one variant at a time: batch 64 and 256, the two resampling forms,
# XLA's command buffers (CUDA graphs) off and on for every graph size. Needs .whl/ as
# scale.sh does. Writes $OUT/<variant>.json and $OUT/speed_log.txt.
set -u
OUT=${OUT:-speed_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
L=$OUT/speed_log.txt
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$L" 2>&1 || exit 1
  export PYTHONPATH=/tmp/site
fi
RUN="python3 -m benchmarks.device.no_tf_launch -m benchmarks.throughput"
RUN="$RUN --config=configs/synthetic.py"
RUN="$RUN --resolution=32 --steps=40 --warmup=5 --distinct_batches=2 --pipeline_batches=3"
RUN="$RUN --pipeline_warmup=1 --matmul_size=1024 --matmul_reps=2"
variant() {  # name, extra XLA flags, args...
  local name=$1 xla=$2; shift 2
  XLA_FLAGS="$xla" timeout "${VARIANT_TIMEOUT:-75}" $RUN --json="$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(grep -o '"images_per_s": [0-9.]*' "$OUT/$name.json" 2>/dev/null)" >> "$L"
  tail -2 "$OUT/$name.log" >> "$L"
}
variant b64_direct "" --batch=64
variant b256_direct "" --batch=256
variant b64_efficient "" --batch=64 --config.model.resampling=efficient
variant b64_graph_min1 "--xla_gpu_graph_min_graph_size=1" --batch=64
variant b64_no_graphs "--xla_gpu_enable_command_buffer=" --batch=64
variant b64_bf16 "" --batch=64 --dtype=bfloat16
