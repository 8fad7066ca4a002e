#!/usr/bin/env bash
# Build the operator image FROM the offline python-base, like the other base images.
#
#   images/operator/build.sh [--rebuild]
#
# Idempotent: the image carries a hash of what goes into it (pyproject.toml, src/,
# this directory) and is rebuilt only when that changes. Build output goes to
# stderr; the image reference is printed on stdout.
# Env: SUBSTRATUS_ENGINE (podman|docker, default podman), SUBSTRATUS_OPERATOR_IMAGE
#      (default localhost/substratus/operator:0.1.0), PYTHON (for reading pyproject.toml).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ENGINE=${SUBSTRATUS_ENGINE:-podman}
TAG=${SUBSTRATUS_OPERATOR_IMAGE:-localhost/substratus/operator:0.1.0}
BASE=localhost/substratus/python-base:bookworm
HASH_LABEL=ai.substratus.source-hash
PYTHON=${PYTHON:-python3}

say() { printf 'build-operator-image: %s\n' "$*" >&2; }
die() { printf 'build-operator-image: ERROR: %s\n' "$*" >&2; exit 1; }

source_hash() {
  (cd "$REPO_ROOT" &&
    find pyproject.toml src images/operator -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \
      -not -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

main() {
  local rebuild=0
  case "${1:-}" in --rebuild) rebuild=1 ;; "") ;; *) die "usage: $0 [--rebuild]" ;; esac
  "$ENGINE" image inspect "$BASE" >/dev/null 2>&1 ||
    die "$BASE is missing. Run: make base-images (or scripts/build-base-images.sh)"
  local want have
  want=$(source_hash)
  have=$("$ENGINE" image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$TAG" 2>/dev/null || true)
  if [ "$rebuild" = 0 ] && [ "$have" = "$want" ]; then
    say "$TAG is up to date ($want)"
    echo "$TAG"
    return 0
  fi
  local t0=$SECONDS
  CTX=$(mktemp -d)
  trap 'rm -rf "$CTX"' EXIT
  cp "$REPO_ROOT/images/operator/Dockerfile" "$REPO_ROOT/pyproject.toml" "$CTX/"
  (cd "$REPO_ROOT" && tar -c --exclude='__pycache__' --exclude='*.egg-info' src) | tar -x -C "$CTX"
  "$PYTHON" - "$REPO_ROOT/pyproject.toml" >"$CTX/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["kubernetes"]))
PY
  say "building $TAG from $BASE (source $want)"
  "$ENGINE" build --network host --build-arg "PYTHON_IMAGE=$BASE" --label "$HASH_LABEL=$want" -t "$TAG" "$CTX" >&2 ||
    die "the build failed (see above). Rerun: $0 --rebuild"
  say "built $TAG in $((SECONDS - t0))s"
  echo "$TAG"
}

main "$@"
