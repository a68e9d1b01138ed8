#!/usr/bin/env bash
# Sets up .venv (see tools/setup.sh) and runs the whole test suite. Extra arguments go to
# pytest, e.g. `bash tools/test.sh tests/test_train_eval.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
