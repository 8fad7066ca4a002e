#!/usr/bin/env bash
# Build the base images that every Substratus example image starts FROM.
#
#   localhost/substratus/python-base:bookworm  python:3.11-slim when it can be pulled,
#                                              else a Debian bookworm image made here
#                                              with debootstrap (no registry needed)
#   localhost/substratus/ml-base:0.1           images/ml/Dockerfile: CPU torch,
#                                              transformers, jupyterlab, substratus-ml
#
# Called by `make images` and by people setting up a machine. Idempotent: an image
# whose tag exists is kept (ml-base is rebuilt only when the files under images/ml/
# change, which the layer cache makes quick). Progress and timings go to stderr.
#
# Usage: scripts/build-base-images.sh [--rebuild]
# Env:   SUBSTRATUS_ENGINE     podman|docker (default: whichever works, podman first)
#        SUBSTRATUS_DEBIAN_MIRROR  (default http://deb.debian.org/debian)
#        SUBSTRATUS_PULL_TIMEOUT   seconds to try pulling python:3.11-slim (default 20)
#        SUBSTRATUS_WHEELS_DIR     local wheel folder holding the CPU torch wheel
#                                  (default /opt/wheels; used only with podman)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PUBLIC_PYTHON=docker.io/library/python:3.11-slim
PYTHON_BASE=localhost/substratus/python-base:bookworm
ROOTFS_IMAGE=localhost/substratus/debian-rootfs:bookworm
ML_BASE=localhost/substratus/ml-base:0.1
HASH_LABEL=ai.substratus.source-hash
MIRROR=${SUBSTRATUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${SUBSTRATUS_PULL_TIMEOUT:-20}
WHEELS_DIR=${SUBSTRATUS_WHEELS_DIR:-/opt/wheels}
HOST_CA=/etc/ssl/certs/ca-certificates.crt
REBUILD=0
SCRIPT_START=$SECONDS

say() { printf 'build-base-images: %s\n' "$*" >&2; }
die() { printf 'build-base-images: ERROR: %s\n' "$*" >&2; exit 1; }

# step NAME CMD... : run CMD, report its duration, stop the script if it fails.
step() {
  local name=$1 t0=$SECONDS
  shift
  say "[$name] start"
  if "$@" >&2; then  # build logs are progress: stderr, so stdout keeps only results
    say "[$name] done in $((SECONDS - t0))s"
  else
    local rc=$?
    die "[$name] failed after $((SECONDS - t0))s (exit $rc). Fix the error above and rerun: $0"
  fi
}

pick_engine() {
  if [ -n "${SUBSTRATUS_ENGINE:-}" ]; then
    ENGINE=$SUBSTRATUS_ENGINE
    "$ENGINE" info >/dev/null 2>&1 || die "SUBSTRATUS_ENGINE=$ENGINE but '$ENGINE info' fails. Run: $ENGINE info"
  elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
    ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    die "no working container engine (podman info and docker info both fail). Run: sudo scripts/setup-engine.sh"
  fi
  say "engine: $ENGINE"
}

image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

image_label() {
  "$ENGINE" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# Extra `build` flags for this machine: host networking, and with podman the host CA
# bundle (TLS-intercepting proxies) and the local torch wheel folder as read-only
# build-time mounts. Docker's build has no -v; there the defaults must work.
build_flags() {
  BUILD_FLAGS=(--network host)
  if [ "$ENGINE" = podman ]; then
    [ -f "$HOST_CA" ] && BUILD_FLAGS+=(-v "$HOST_CA:$HOST_CA:ro")
    if compgen -G "$WHEELS_DIR/torch-*.whl" >/dev/null; then
      BUILD_FLAGS+=(-v "$WHEELS_DIR:/wheels:ro")
      say "torch wheels from $WHEELS_DIR (mounted at /wheels during the build)"
    fi
  fi
}

try_pull_python() {
  say "trying to pull $PUBLIC_PYTHON (timeout ${PULL_TIMEOUT}s)"
  if timeout "$PULL_TIMEOUT" "$ENGINE" pull -q "$PUBLIC_PYTHON" >/dev/null 2>&1; then
    "$ENGINE" tag "$PUBLIC_PYTHON" "$PYTHON_BASE"
    say "tagged $PUBLIC_PYTHON as $PYTHON_BASE"
    return 0
  fi
  say "cannot pull $PUBLIC_PYTHON; making $PYTHON_BASE from Debian packages"
  return 1
}

debootstrap_rootfs() {
  [ "$(id -u)" = 0 ] || die "debootstrap needs root. Run: sudo $0"
  command -v debootstrap >/dev/null || die "debootstrap is not installed. Run: sudo scripts/setup-engine.sh"
  WORK=$(mktemp -d /var/tmp/substratus-rootfs.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  say "debootstrap bookworm into $WORK/rootfs from $MIRROR"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
      tail -n 20 "$WORK/debootstrap.log" >&2
      return 1
    }
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"* || return 1
}

import_rootfs() {
  tar -C "$WORK/rootfs" --numeric-owner -c . |
    "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$ROOTFS_IMAGE" >/dev/null || return 1
  rm -rf "$WORK"
  say "imported $ROOTFS_IMAGE"
}

finish_python_base() {
  local ctx
  ctx=$(mktemp -d)
  cp "$REPO_ROOT/images/base/Dockerfile" "$ctx/Dockerfile"
  if [ -f "$HOST_CA" ]; then
    cp "$HOST_CA" "$ctx/host-ca-bundle.crt"
  else
    : >"$ctx/host-ca-bundle.crt"
  fi
  "$ENGINE" build --network host --build-arg "ROOTFS_IMAGE=$ROOTFS_IMAGE" \
    --label ai.substratus.base=debootstrap -t "$PYTHON_BASE" "$ctx" >&2
  local rc=$?
  rm -rf "$ctx"
  return $rc
}

ensure_python_base() {
  if [ "$REBUILD" = 0 ] && image_exists "$PYTHON_BASE"; then
    say "[python-base] $PYTHON_BASE exists; skipped"
    return 0
  fi
  if try_pull_python; then
    return 0
  fi
  if [ "$REBUILD" = 1 ] || ! image_exists "$ROOTFS_IMAGE"; then
    step "python-base: debootstrap" debootstrap_rootfs
    step "python-base: import" import_rootfs
  fi
  step "python-base: venv layer" finish_python_base
}

# Hash of everything that goes into ml-base, so a changed package or pin rebuilds it.
ml_source_hash() {
  (cd "$REPO_ROOT/images/ml" &&
    find . -type f -not -path '*/__pycache__/*' -not -path './build/*' \
      -not -path '*.egg-info/*' -not -name '*.pyc' -not -path './tests/*' \
      -not -path './.pytest_cache/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

ensure_ml_base() {
  [ -f "$REPO_ROOT/images/ml/pyproject.toml" ] ||
    die "images/ml/pyproject.toml is missing: the substratus-ml package must exist before ml-base can be built"
  local want have
  want=$(ml_source_hash)
  have=$(image_label "$ML_BASE" "$HASH_LABEL")
  if [ "$REBUILD" = 0 ] && [ "$have" = "$want" ]; then
    say "[ml-base] $ML_BASE exists and images/ml is unchanged ($want); skipped"
    return 0
  fi
  [ -n "$have" ] && say "[ml-base] images/ml changed ($have -> $want); rebuilding"
  build_flags
  step "ml-base: build" "$ENGINE" build "${BUILD_FLAGS[@]}" \
    --build-arg "PYTHON_IMAGE=$PYTHON_BASE" --label "$HASH_LABEL=$want" \
    -t "$ML_BASE" -f "$REPO_ROOT/images/ml/Dockerfile" "$REPO_ROOT/images/ml"
}

main() {
  case "${1:-}" in
    --rebuild) REBUILD=1 ;;
    "") ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'usage: %s [--rebuild]\n' "$0" >&2; exit 2 ;;
  esac
  pick_engine
  step "python-base" ensure_python_base
  step "ml-base" ensure_ml_base
  say "images ready in $((SECONDS - SCRIPT_START))s:"
  local image
  for image in "$PYTHON_BASE" "$ML_BASE"; do
    "$ENGINE" images --format '  {{.Repository}}:{{.Tag}} {{.Size}}' "$image" >&2 || true
  done
}

main "$@"
