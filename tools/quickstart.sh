#!/usr/bin/env bash
# The README's first command: sets up .venv (tools/setup.sh), records a small RLDS dataset
# with a uniform-random policy in the real Hopper MuJoCo environment, trains CQL-SAC on it
# through Reverb (configs/quickstart.gin), evaluates the greedy policy in the real
# environment, and prints its D4RL normalized score next to the dataset's mean return.
# Outputs go to runs/quickstart (or $1). Rerunning reuses the dataset and resumes the run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bash tools/setup.sh

run_dir="$(mkdir -p "${1:-runs/quickstart}" && cd "${1:-runs/quickstart}" && pwd)"
env_name=hopper-random-v2
export TF_CPP_MIN_LOG_LEVEL=2
cd "$run_dir"  # MuJoCo writes its MUJOCO_LOG.TXT into the working directory.

start=$(date +%s)
if [ ! -f dataset/dataset_info.json ]; then
  echo "== Recording 20,000 steps of a random policy in the real Hopper (${env_name})"
  rm -rf dataset
  "$repo/.venv/bin/cql_sac_make_dataset" --env_name="$env_name" --policy=random \
    --num_steps=20000 --seed=0 --output_dir="$run_dir/dataset" > make_dataset.log 2>&1 ||
    { tail -n 30 make_dataset.log; exit 1; }
fi

echo "== Training CQL-SAC for 5,000 steps (log: $run_dir/train.log)"
set +e
"$repo/.venv/bin/cql_sac_train_eval" --root_dir="$run_dir/train" --env_name="$env_name" \
  --dataset_name="$run_dir/dataset" --gin_file="$repo/configs/quickstart.gin" --seed=0 \
  2>&1 | tee train.log | grep --line-buffered -E \
  'train_eval.py.*(Dataset|Reverb|step [0-9]+/)|AverageReturn =|normalized_score =|^Dataset|^Final|^Trained|error'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "cql_sac_train_eval failed (exit $status); the end of $run_dir/train.log:"
  tail -n 30 train.log
  exit "$status"
fi

dataset_return=$(sed -n 's/^Dataset: .*mean episode return \(-\?[0-9.]*\).*/\1/p' train.log)
"$repo/.venv/bin/python" "$repo/tools/plot_training_curve.py" --root_dir="$run_dir/train" \
  --output="$run_dir/training_curve.png" --dataset_mean_return="$dataset_return" 2>/dev/null
policy_return=$(sed -n 's/^Final evaluation: mean return \(-\?[0-9.]*\).*/\1/p' train.log)
verdict=$(awk -v p="$policy_return" -v d="$dataset_return" \
  'BEGIN { print (p > d) ? "above" : "NOT above" }')
echo "== The learned policy's mean return, ${policy_return}, is ${verdict} the dataset's" \
  "mean episode return, ${dataset_return}. Figure: $run_dir/training_curve.png"
echo "== Done in $(( $(date +%s) - start )) s (TensorBoard: .venv/bin/tensorboard --logdir $run_dir/train)"
