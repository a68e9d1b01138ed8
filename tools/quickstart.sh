#!/usr/bin/env bash
# The README's first command: sets up .venv (tools/setup.sh), records a small RLDS dataset
# in the real Hopper MuJoCo environment with the shipped behaviour policy (noisy, mixed with
# uniform-random episodes: cql_sac_make_dataset --quickstart), trains CQL-SAC on it through
# Reverb (configs/quickstart.gin), evaluates the greedy policy in the real environment, and
# compares the final return with the untrained policy's (step 0), the dataset's mean episode
# return and the behaviour policy's, also as D4RL normalized scores.
# Outputs go to runs/quickstart (or $1): the dataset, and per training seed (SEED, default 0)
# train/seed_<SEED> with its log and figure. Rerunning reuses the dataset and resumes that
# seed's run; another SEED trains a run of its own beside it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bash tools/setup.sh

run_dir="$(mkdir -p "${1:-runs/quickstart}" && cd "${1:-runs/quickstart}" && pwd)"
env_name=hopper-medium-v2
export TF_CPP_MIN_LOG_LEVEL=2
cd "$run_dir"  # MuJoCo writes its MUJOCO_LOG.TXT into the working directory.

metadata_value() {  # The value of a key of the dataset's cql_sac_metadata.json, or nothing.
  "$repo/.venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    dataset/cql_sac_metadata.json "$1"
}

start=$(date +%s)
if [ -f dataset/dataset_info.json ] && [ -z "$(metadata_value random_episode_probability)" ]; then
  echo "$run_dir holds the older quickstart's uniform-random dataset and its run; nothing was" \
    "changed. Pass a new directory (bash tools/quickstart.sh runs/quickstart_v2) or move it away."
  exit 1
fi
if [ ! -f dataset/dataset_info.json ]; then
  echo "== Recording 20,000 steps in the real Hopper: the shipped behaviour policy with noise," \
    "mixed with uniform-random episodes"
  rm -rf dataset
  "$repo/.venv/bin/cql_sac_make_dataset" --quickstart --seed=0 \
    --output_dir="$run_dir/dataset" > make_dataset.log 2>&1 ||
    { tail -n 30 make_dataset.log; exit 1; }
fi

seed="${SEED:-0}"
train_dir="$run_dir/train/seed_$seed"
mkdir -p "$train_dir"
echo "== Training CQL-SAC for 5,000 steps, seed $seed (log: $train_dir/train.log)"
set +e
"$repo/.venv/bin/cql_sac_train_eval" --root_dir="$train_dir" --env_name="$env_name" \
  --dataset_name="$run_dir/dataset" --gin_file="$repo/configs/quickstart.gin" --seed="$seed" \
  2>&1 | tee "$train_dir/train.log" | grep --line-buffered -E \
  'train_eval.py.*(Dataset|Reverb|step [0-9]+/)|AverageReturn =|normalized_score =|^Dataset|^Final|^Trained|error'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "cql_sac_train_eval failed (exit $status); the end of $train_dir/train.log:"
  tail -n 30 "$train_dir/train.log"
  exit "$status"
fi

dataset_return=$(sed -n 's/^Dataset: .*mean episode return \(-\?[0-9.]*\).*/\1/p' "$train_dir/train.log")
echo "== Greedy policy in the real Hopper (mean of 5 episodes) against the references:"
"$repo/.venv/bin/python" "$repo/tools/plot_training_curve.py" --root_dir="$train_dir" \
  --output="$train_dir/training_curve.png" --dataset_mean_return="$dataset_return" \
  --behavior_return="$(metadata_value behavior_policy_greedy_return)" \
  --env_name="$env_name" 2>/dev/null | grep -v '^Wrote'
echo "== Figure: $train_dir/training_curve.png"
echo "== Done in $(( $(date +%s) - start )) s (TensorBoard: .venv/bin/tensorboard --logdir $run_dir/train)"
