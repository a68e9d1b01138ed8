#!/usr/bin/env bash
# Sets up .venv (see tools/setup.sh) and runs the whole test suite. `--fast` runs the fast tier
# instead, `pytest -m "not slow"` (every module, no training runs). Other arguments go to
# pytest, e.g. `bash tools/test.sh tests/test_train_eval.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
for arg in "$@"; do
  if [[ "$arg" == --fast ]]; then
    args+=(-m "not slow")
  else
    args+=("$arg")
  fi
done
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
