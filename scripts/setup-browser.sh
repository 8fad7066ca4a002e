#!/usr/bin/env bash
# Make the browser test tier runnable: Debian's chromium, driven by Playwright's
# Python package (installed with the venv's `test` extra). Playwright never
# downloads a browser here (`playwright install` fails offline): the tests point
# it at /usr/bin/chromium.
#
# Called by `make test-browser`. Idempotent: when chromium is installed it only
# says so. Needs root (or sudo) for apt-get the first time.
set -euo pipefail

CHROMIUM=${SUBSTRATUS_CHROMIUM:-/usr/bin/chromium}
say() { printf 'setup-browser: %s\n' "$*" >&2; }
die() { printf 'setup-browser: ERROR: %s\n' "$*" >&2; exit 1; }

if [ -x "$CHROMIUM" ]; then
  say "chromium already installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi
command -v apt-get >/dev/null || die "no $CHROMIUM and no apt-get: install Chromium and set SUBSTRATUS_CHROMIUM to it"
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "needs root to apt-get install chromium. Run: sudo $0"
  SUDO=sudo
fi
say "installing Debian's chromium (apt-get; a few minutes on a fresh machine)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || die "apt-get update failed; check the network to the Debian mirror"
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
  || die "apt-get install chromium failed; run it by hand to see why"
[ -x "$CHROMIUM" ] || die "chromium installed but $CHROMIUM is missing"
say "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
