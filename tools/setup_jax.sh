#!/usr/bin/env bash
# Creates .venv-jax at the repository root with requirements-jax.txt (JAX on CPU, NumPy; no
# TensorFlow): where benchmarks/xla_run.py runs the XLA exports of benchmarks/xla_export.py.
# Needs Python 3.11 (or set PYTHON) and PyPI; idempotent, like tools/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/find_python.sh
if [ ! -x .venv-jax/bin/python ]; then
  "$(find_python)" -m venv .venv-jax
fi
stamp=.venv-jax/.installed
wanted="$(sha256sum requirements-jax.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv-jax/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-jax.txt
  echo "$wanted" > "$stamp"
fi
