#!/bin/bash
# Dataset-design experiment of the emergence benchmark: which layout of the synthetic dataset lets
# the shift pick the object as the object layer? One emergence run (GAN, encoder, evaluation) per
# variant, all in parallel on one accelerator (the 32 px models are tiny; the GPU is shared).
#
# Run from the repository root on the device machine (see gpu_throughput.sh for what it needs:
# .whl/ with clu and ml_collections wheels where they are missing). Writes under $OUT:
#   log.txt, runs.tgz (logs, eval/metrics.json, samples of every run),
# summarized here with:
#   python -m benchmarks.device.dataset_variants_summary --dir=DIR_WITH_RUNS \
#       --json=benchmarks/results/emergence_dataset_variants.json
# PLAN selects the runs: "name margin rim setting seed [extra flags]" per line (the extra flags go
# to emergence.py, e.g. "--gan_steps=4000 --config.train.batch_size=64"). SEGMENTER_CACHE, if set, is
# a folder of cached reference segmenters (a workdir_root's reference_segmenter/) copied into each
# run's workdir_root, so that the runs do not each train the same one again.
set -u
OUT=${OUT:-variants_out}
BUDGET=${BUDGET:-440}
RUNS=${RUNS:-/tmp/dataset_variants}
mkdir -p "$OUT" "$RUNS"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
L=$OUT/log.txt
{ echo "== start $(date -u)"; python3 -c "import jax; print(jax.__version__, jax.devices())"; } >> "$L" 2>&1
PLAN=${PLAN:-"A_margin-0.15 -0.15 0.8 default 0
B_margin-0.15 -0.15 0.8 no_shift 0
A_margin0 0.0 0.8 default 0
A_margin0.125_norim 0.125 0.0 default 0
A_margin0.125 0.125 0.8 default 0
B_margin0.125 0.125 0.8 no_shift 0"}
pack() {
  tar czf "$OUT/runs.tgz.tmp" --exclude='*checkpoints*' --exclude='*.npz' --exclude='*tfevents*' \
    --exclude='step_*.png' -C "$RUNS" . 2>/dev/null && mv "$OUT/runs.tgz.tmp" "$OUT/runs.tgz"
}
( while true; do sleep 15; pack; done ) &  # Partial results come back if the call is cut off.
PACKER=$!
PIDS=()
while read -r name margin rim setting seed extra; do
  [ -z "$name" ] && continue
  (
    echo "$name margin=$margin rim=$rim setting=$setting seed=$seed $extra" > "$RUNS/$name.variant"
    if [ -n "${SEGMENTER_CACHE:-}" ]; then
      mkdir -p "$RUNS/$name" && cp -r "$SEGMENTER_CACHE" "$RUNS/$name/reference_segmenter"
    fi
    timeout $(( BUDGET - $(el) )) \
      python3 -m benchmarks.device.no_tf_launch -m benchmarks.emergence --verbose \
      --settings="$setting" --seeds="$seed" $extra --workdir_root="$RUNS/$name" \
      --out_dir="$RUNS/$name/out" --config.train.checkpoint_every_steps=1250 \
      --config.data.synthetic_layout.margin="$margin" \
      --config.data.synthetic_layout.rim_probability="$rim" \
      > "$RUNS/$name.log" 2>&1
    echo "$name rc=$? [$(el) s]" >> "$L"
  ) &
  PIDS+=($!)
done <<< "$PLAN"
wait "${PIDS[@]}"
kill $PACKER 2>/dev/null
pack
echo "== done [$(el) s]" >> "$L"
