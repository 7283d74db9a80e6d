#!/bin/sh
# Build the nb2kfp job image from this checkout and push it:  sh job-image/build.sh IMAGE:TAG
# Needs a Docker engine and a python3 (builds nb2kfp's own pure-Python wheel). Settings from the environment:
#   NB2KFP_JOB_IMAGE_BASE    base image (default: the Dockerfile's pinned Debian); git/python3/pip come from apt
#                            unless the base has them
#   NB2KFP_JOB_IMAGE_WHEELS  a folder of wheels fetched ahead (pip wheel -r job-image/requirements.txt): the build
#                            then uses no package index at all
#   CI_REGISTRY, CI_REGISTRY_USER, CI_REGISTRY_PASSWORD   docker login before the push (GitLab sets them in jobs)
# Prints the pushed image as REPOSITORY@sha256:... on its last line.
set -eu
image=${1:?usage: job-image/build.sh IMAGE:TAG}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${PYTHON:-python3}
context=$(mktemp -d "${TMPDIR:-/tmp}/nb2kfp-job-image.XXXXXX")
trap 'rm -rf "$context"' EXIT

mkdir -p "$context/wheels"
cp "$here/Dockerfile" "$here/requirements.txt" "$context/"
"$python" -m pip wheel --quiet --no-deps --disable-pip-version-check --wheel-dir "$context/wheels" "$root"
set -- --build-arg "VERSION=${image##*:}" --build-arg "SOURCE=${CI_PROJECT_URL:-}"
if [ -n "${NB2KFP_JOB_IMAGE_BASE:-}" ]; then set -- "$@" --build-arg "BASE=$NB2KFP_JOB_IMAGE_BASE"; fi
if [ -n "${NB2KFP_JOB_IMAGE_WHEELS:-}" ]; then
  cp "$NB2KFP_JOB_IMAGE_WHEELS"/*.whl "$context/wheels/"
  set -- "$@" --build-arg PIP_NO_INDEX=1
fi
docker build --quiet --tag "$image" "$@" "$context" >/dev/null

if [ -n "${CI_REGISTRY_PASSWORD:-}" ]; then
  printf '%s' "$CI_REGISTRY_PASSWORD" | docker login --username "${CI_REGISTRY_USER:?}" --password-stdin "${CI_REGISTRY:?}" >/dev/null
fi
docker push --quiet "$image" >/dev/null
docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -F "${image%:*}@" | head -n 1
