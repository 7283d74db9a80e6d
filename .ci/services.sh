#!/usr/bin/env bash
# Bring up the real parts the integration tests use, on a fresh Debian 12 machine (as root):
#   - a Docker engine (Debian docker.io; no bridge/iptables here: containers get loopback only)
#   - a registry with htpasswd auth on 127.0.0.1 (Debian docker-registry, own config)
#   - an offline Python base image (no Docker Hub here): mmdebstrap | docker import
# Writes the settings the tests read to $NB2KFP_SERVICES_ENV (sourced by .ci/run).
set -euo pipefail
STATE=${NB2KFP_SERVICES_DIR:-/tmp/nb2kfp-services}
ENV_FILE=${NB2KFP_SERVICES_ENV:-$STATE/env}
PORT=${NB2KFP_REGISTRY_PORT:-5055}
BASE=nb2kfp-test-base:bookworm-py311-2
JOB_BASE=nb2kfp-test-jobbase:bookworm-git-1
mkdir -p "$STATE"

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v htpasswd >/dev/null || need+=(apache2-utils)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
command -v rsync >/dev/null || need+=(rsync)  # gitlab-ci-local needs it
command -v chromium >/dev/null || need+=(chromium)  # tests/test_reports.py opens the run report headless
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  nohup dockerd --iptables=false --bridge=none >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$STATE/dockerd.log"; exit 1; }
fi

# Registry with basic auth (the Debian package's own config points htpasswd at a folder: use ours).
USER=nb2kfp-ci
if [ ! -f "$STATE/password" ]; then head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$STATE/password"; fi
htpasswd -Bbn "$USER" "$(cat "$STATE/password")" > "$STATE/htpasswd"
cat > "$STATE/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
auth:
  htpasswd:
    realm: nb2kfp-ci
    path: $STATE/htpasswd
YAML
if ! curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/"; then
  nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  for _ in $(seq 1 30); do curl -s -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.5; done
fi
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/")
[ "$code" = 401 ] || { echo "registry on $PORT answers $code, expected 401"; tail "$STATE/registry.log"; exit 1; }

# Offline base image: Debian's python3 (3.11) and pip, nothing from Docker Hub.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=extract --include=python3,python3-pip,dash,coreutils,libc-bin,libstdc++6,libgomp1 bookworm - \
      http://deb.debian.org/debian \
    | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >/dev/null
fi

# Offline base for the nb2kfp job image (job-image/Dockerfile needs git, python3 and pip in it, or apt).
if ! docker image inspect "$JOB_BASE" >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=extract --include=python3,python3-pip,git,ca-certificates,dash,coreutils,libc-bin,libstdc++6 \
      bookworm - http://deb.debian.org/debian \
    | docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$JOB_BASE" >/dev/null
fi

# gitlab-ci-local (pinned: newer releases crash on Node 20), for the CI component tests.
NODE_DIR=$STATE/node
if [ ! -x "$NODE_DIR/node_modules/.bin/gitlab-ci-local" ]; then
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent gitlab-ci-local@4.73.0 >/dev/null
fi

cat > "$ENV_FILE" <<ENV
export NB2KFP_TEST_REGISTRY=127.0.0.1:$PORT
export NB2KFP_TEST_REGISTRY_USER=$USER
export NB2KFP_TEST_REGISTRY_PASSWORD_FILE=$STATE/password
export NB2KFP_TEST_BASE_IMAGE=$BASE
export NB2KFP_TEST_JOB_BASE_IMAGE=$JOB_BASE
export NB2KFP_GITLAB_CI_LOCAL=$NODE_DIR/node_modules/.bin/gitlab-ci-local
ENV
echo "services: docker $(docker version -f '{{.Server.Version}}'), registry 127.0.0.1:$PORT, base $BASE"
