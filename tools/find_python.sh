# Sourced by tools/setup.sh and tools/setup_jax.sh: `find_python` prints the first Python 3.11
# among $PYTHON, python3.11, python3 and python, or fails with a one-line message.
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
