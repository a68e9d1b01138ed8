#!/usr/bin/env bash
# Creates .venv at the repository root with the pinned dependency set and cql-sac
# installed in editable mode (console scripts in .venv/bin). Needs only Python 3.11 and
# access to PyPI. Idempotent: does nothing when the requirement files and setup.py are
# unchanged since its last successful run.
#
# The install is two steps on purpose: tf-agents pins typing-extensions==4.5.0 while
# gymnasium declares >=4.12, so one resolver run over both sets fails. A third step puts
# tf-agents' typing-extensions==4.5.0 back: with newer versions TensorFlow 2.15 cannot
# trace tracked dicts (PolicySaver fails with "this __dict__ descriptor does not support
# '_DictWrapper' objects"), while gymnasium uses the newer names only under TYPE_CHECKING.
set -euo pipefail
cd "$(dirname "$0")/.."

source tools/find_python.sh

if [ ! -x .venv/bin/python ]; then
  "$(find_python)" -m venv .venv
fi
stamp=.venv/.cql_sac_installed
wanted="$(cat requirements.txt requirements-sim.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing the pinned dependencies into .venv (a few minutes the first time)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  # Steps 2 and 3 print a typing-extensions conflict warning: expected (see above).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sim.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    typing-extensions==4.5.0
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$wanted" > "$stamp"
fi
