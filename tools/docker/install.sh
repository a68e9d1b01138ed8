#!/usr/bin/env bash
# Image build step shared by Dockerfile and Dockerfile.gpu (their only RUN): installs
# cql-sac into /opt/cql-sac/.venv. Reads the build args EXTRA_CA_CERT, TENSORFLOW_EXTRAS
# and CQL_SAC_PIP_SPEC (see Dockerfile). Runs in the image's working directory, which holds
# the checkout's files copied by the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/../.."

bundle=/etc/ssl/certs/ca-certificates.crt
if [ ! -f "$bundle" ]; then
  echo "install.sh: $bundle is missing; the base image needs the ca-certificates package." >&2
  exit 1
fi
# 1. Trust the extra CA: the Dockerfile copied it next to setup.py; update-ca-certificates
#    appends every *.crt of /usr/local/share/ca-certificates (all its certificates) to the
#    system bundle that pip and requests are pointed at.
if [ -n "${EXTRA_CA_CERT:-}" ]; then
  mv "$(basename "$EXTRA_CA_CERT")" /usr/local/share/ca-certificates/cql-sac-extra-ca.crt
  update-ca-certificates
fi

# 2. The one shared library that no wheel ships: envlogger's Riegeli reader and writer
#    (dataset recording, cql_sac_make_dataset) link GMP's C++ library, libgmpxx.so.4.
#    From the base image's Debian/Ubuntu archive, unless the base image has it already.
if ! ldconfig -p | grep -q 'libgmpxx\.so\.4 '; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgmpxx4ldbl
  rm -rf /var/lib/apt/lists/*
fi

# 3. The project's install: .venv with requirements.txt, then requirements-sim.txt, then
#    tf-agents' typing-extensions pin put back, then cql-sac itself (editable). pip prints
#    a typing-extensions conflict there; it is expected (see tools/setup.sh). No pip cache
#    in the image.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
bash tools/setup.sh

# 4. GPU image: the CUDA libraries as TensorFlow's pip extras (and-cuda) of the very
#    tensorflow version that requirements.txt pins.
if [ -n "${TENSORFLOW_EXTRAS:-}" ]; then
  tensorflow_pin="$(grep -E '^tensorflow==' requirements.txt | cut -d'#' -f1 | tr -d ' ')"
  if [ -z "$tensorflow_pin" ]; then
    echo "install.sh: requirements.txt has no 'tensorflow==<version>' line." >&2
    exit 1
  fi
  .venv/bin/pip install "tensorflow[${TENSORFLOW_EXTRAS}]==${tensorflow_pin#tensorflow==}"
fi

# 5. Another cql-sac than the build context's, over the editable install; its dependencies
#    are the pinned ones installed above. The context's package is removed so that nothing
#    (e.g. `python -m` from the working directory) imports it instead.
if [ -n "${CQL_SAC_PIP_SPEC:-}" ]; then
  .venv/bin/pip install --no-deps --force-reinstall "$CQL_SAC_PIP_SPEC"
  rm -rf cql_sac
fi

# 6. Fail the build, not the first run, if the stack does not import (e.g. a shared library
#    missing from the base image): the training binary and the dataset recorder.
.venv/bin/python -c 'import cql_sac.train_eval, cql_sac.recording.make_dataset'

# The runs' output directory, for a mounted volume (docker run -v ...:/runs).
mkdir -p /runs
