#!/usr/bin/env bash
# Builds the cql-sac Docker images from this checkout: cql-sac:cpu (Dockerfile) and
# cql-sac:gpu (Dockerfile.gpu). Arguments go to `docker build`, e.g. --network=host.
#
#   tools/docker/build.sh                        # both images
#   VARIANTS=cpu tools/docker/build.sh           # only cql-sac:cpu
#   BASE_IMAGE=my-registry/python:3.11-slim EXTRA_CA_CERT=/etc/ssl/certs/proxy-ca.pem \
#     tools/docker/build.sh --network=host       # restricted network (see README.md)
#
# Environment: VARIANTS (default "cpu gpu"), IMAGE (default cql-sac; tags IMAGE:cpu and
# IMAGE:gpu), BASE_IMAGE (default the Dockerfiles' python:3.11-slim), EXTRA_CA_CERT (a PEM
# file on this machine, trusted inside the build and the image), CQL_SAC_PIP_SPEC (see
# Dockerfile).
#
# The build context is a temporary copy of the files git knows (tracked, plus untracked
# ones that .gitignore does not exclude) and EXTRA_CA_CERT: no .venv/, runs/ or .git/.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do
    # Tracked files deleted from the work tree are listed too; leave them out.
    if [ -e "$file" ]; then printf '%s\0' "$file"; fi
  done | tar --null -T - -c | tar -x -C "$context"

build_args=()
if [ -n "${BASE_IMAGE:-}" ]; then
  build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
if [ -n "${EXTRA_CA_CERT:-}" ]; then
  cp "$EXTRA_CA_CERT" "$context/extra-ca.crt"
  build_args+=(--build-arg EXTRA_CA_CERT=extra-ca.crt)
fi
if [ -n "${CQL_SAC_PIP_SPEC:-}" ]; then
  build_args+=(--build-arg "CQL_SAC_PIP_SPEC=$CQL_SAC_PIP_SPEC")
fi

for variant in ${VARIANTS:-cpu gpu}; do
  case "$variant" in
    cpu) dockerfile=Dockerfile ;;
    gpu) dockerfile=Dockerfile.gpu ;;
    *) echo "build.sh: unknown variant '$variant' (cpu or gpu)" >&2; exit 1 ;;
  esac
  echo "== Building ${IMAGE:-cql-sac}:$variant from tools/docker/$dockerfile"
  start=$(date +%s)
  docker build --file "$context/tools/docker/$dockerfile" --tag "${IMAGE:-cql-sac}:$variant" \
    "${build_args[@]}" "$@" "$context"
  echo "== Built ${IMAGE:-cql-sac}:$variant in $(( $(date +%s) - start )) s"
done
