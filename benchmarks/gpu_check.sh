#!/usr/bin/env bash
# The GPU measurement in ONE run of at most 8 minutes, with no installs on the GPU machine:
# every XLA export under EXPORT_DIR is compiled by that machine's own JAX, checked against
# TensorFlow's outputs and timed (benchmarks/xla_run.py); JSON and a table go to OUT_DIR.
#
# 1. Here (TensorFlow, CPU): make the exports, the most important configuration first
#    (about 20 minutes on 2 cores; ~40 MiB, under the 64 MiB that travels):
#      .venv/bin/python -m benchmarks.xla_export --output_dir=runs/xla_gpu \
#        --critics=256x256x256,256x256 --batch_sizes=256,1024 \
#        --compute_dtypes=float32,bfloat16 --steps_per_call=1000,100,10,1 \
#        --reference_max_k=10 --reference_elements=4096
#      .venv/bin/python -m benchmarks.xla_export --output_dir=runs/xla_gpu \
#        --critics=256x256x256 --batch_sizes=256 --steps_per_call=10,1000 \
#        --precisions=highest --reference_max_k=10 --reference_elements=4096
# 2. On the GPU machine (the device tool, with carry=['runs/xla_gpu']):
#      bash benchmarks/gpu_check.sh "$OUT" runs/xla_gpu
#    Knobs, as environment variables: XLA_FLAGS (e.g. command buffers and while loops:
#    --xla_gpu_enable_command_buffer=...), CALLS (timed calls per export, default 5),
#    BUDGET_S (no export starts after it, default 420), ONLY (a regex of export names).
# Dry run on CPU (the K=1 exports, one timed call each):
#    PYTHON=.venv-jax/bin/python ONLY='_k1$' CALLS=1 bash benchmarks/gpu_check.sh /tmp/gpu_dry
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_check.sh OUT_DIR [EXPORT_DIR]}"
exports="${2:-runs/xla_gpu}"
python="${PYTHON:-python3}"
mkdir -p "$out"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 ||
    echo "no nvidia-smi"
  "$python" -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, jax.devices())'
  echo "XLA_FLAGS=${XLA_FLAGS:-}"
  du -sh "$exports"
} 2>&1 | tee "$out/device.txt"
"$python" benchmarks/xla_run.py "$exports" --calls="${CALLS:-5}" --only="${ONLY:-}" \
  --time_budget_s="${BUDGET_S:-420}" --output_json="$out/gpu_grid.json" \
  | grep -v '^{"jax_version' | tee "$out/gpu_grid.txt"
