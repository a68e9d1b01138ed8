#!/usr/bin/env bash
# Creates .venv at the repository root with the pinned dependency set and cql-sac
# installed in editable mode (console scripts in .venv/bin). Needs only Python 3.11 and
# access to PyPI. Idempotent: does nothing when the requirement files and setup.py are
# unchanged since its last successful run.
#
# The install is two steps on purpose: tf-agents pins typing-extensions==4.5.0 while
# gymnasium needs >=4.12; pip reports the conflict after the second step and both work.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3 python; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$candidate"
      return
    fi
  done
  echo "cql-sac needs Python 3.11 (TensorFlow 2.15 and dm-reverb 0.14 have no wheels for" \
       "other versions); none found. Set PYTHON=/path/to/python3.11." >&2
  exit 1
}

if [ ! -x .venv/bin/python ]; then
  "$(find_python)" -m venv .venv
fi
stamp=.venv/.cql_sac_installed
wanted="$(cat requirements.txt requirements-sim.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing the pinned dependencies into .venv (a few minutes the first time)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  # Step 2 prints a typing-extensions conflict warning from tf-agents' pin: expected.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sim.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$wanted" > "$stamp"
fi
