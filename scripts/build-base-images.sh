#!/usr/bin/env bash
# Build the base images that every Substratus example image starts FROM:
#
#   localhost/substratus/python-base:bookworm  python:3.11-slim when it can be pulled,
#                                              else Debian bookworm made here with
#                                              debootstrap (root needed for that)
#   localhost/substratus/ml-base:0.1           images/ml/Dockerfile: CPU torch,
#                                              transformers, jupyterlab, substratus-ml
#
# A thin wrapper: the work is done by `sub images build` (src/substratus/baseimages/),
# the same code an installed `sub` runs, so there is one implementation. It uses the
# checkout's .venv (`make venv`), else a `sub` on PATH. Arguments go to it as they
# are; `--rebuild` rebuilds both images. See `sub images build --help` for the
# options and environment (SUBSTRATUS_ENGINE, SUBSTRATUS_WHEELS_DIR,
# SUBSTRATUS_CA_BUNDLE, SUBSTRATUS_DEBIAN_MIRROR, SUBSTRATUS_PULL_TIMEOUT).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ -x "$REPO_ROOT/.venv/bin/sub" ]; then
  exec "$REPO_ROOT/.venv/bin/sub" images build "$@"
elif command -v sub >/dev/null 2>&1; then
  exec sub images build "$@"
fi
printf 'build-base-images: ERROR: no `sub` found: run `make venv` (creates %s/.venv) or install substratus\n' \
  "$REPO_ROOT" >&2
exit 1
