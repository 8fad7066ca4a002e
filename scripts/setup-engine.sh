#!/usr/bin/env bash
# Make a container engine usable on this machine (Debian 12 / Ubuntu, run as root).
#
# Called by `make setup`. Idempotent: when podman or docker already works and the
# tools the tests need are present, it only checks and says so. Every step prints
# one line to stderr; a failure exits non-zero with what to do next.
#
# What it may change:
#   - apt-get install podman runc uidmap slirp4netns busybox-static debootstrap git catatonit
#     (only the ones missing)
#   - /etc/containers/containers.conf: written only when absent, or when a trial
#     `podman run` fails with the known crun ("cgroups in hybrid mode") or ulimit
#     ("setrlimit RLIMIT_NOFILE") errors. An existing file is backed up first.
set -euo pipefail

# Podman reads CONTAINERS_CONF instead of the system file when it is set.
CONF=${CONTAINERS_CONF:-/etc/containers/containers.conf}
TRIAL_IMAGE=localhost/substratus/engine-check:busybox

say() { printf 'setup-engine: %s\n' "$*" >&2; }
die() { printf 'setup-engine: ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    die "needs root to install packages ($1). Run: sudo $0"
  fi
}

apt_install() {
  # apt_install PKG... : install only the packages that are not installed yet.
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "packages already installed: $*"
    return 0
  fi
  need_root "${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} with your package manager"
  say "installing: ${missing[*]}"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    die "apt-get install ${missing[*]} failed. To debug, run: apt-get install ${missing[*]}"
  fi
  say "installed: ${missing[*]}"
}

engine_works() { command -v "$1" >/dev/null 2>&1 && timeout 60 "$1" info >/dev/null 2>&1; }

# Build a 1-file image FROM scratch with static busybox, so the trial needs no registry.
ensure_trial_image() {
  podman image exists "$TRIAL_IMAGE" 2>/dev/null && return 0
  local ctx
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox","true"]\n' >"$ctx/Containerfile"
  podman build -q -t "$TRIAL_IMAGE" "$ctx" >/dev/null 2>"$ctx/err" || { cat "$ctx/err" >&2; rm -rf "$ctx"; return 1; }
  rm -rf "$ctx"
}

podman_trial() {
  # Prints podman's stderr on failure; returns podman's exit status.
  ensure_trial_image 2>&1 || return 1
  podman run --rm "$TRIAL_IMAGE" /bin/busybox true 2>&1 >/dev/null
}

write_conf() {
  need_root "write $CONF"
  mkdir -p "$(dirname "$CONF")"
  if [ -e "$CONF" ]; then
    local backup
    backup="$CONF.bak.$(date +%Y%m%d%H%M%S)"
    cp -p "$CONF" "$backup"
    say "backed up $CONF to $backup"
  fi
  cat >"$CONF" <<'CONF'
# Written by substratus scripts/setup-engine.sh.
# crun fails on cgroup v1 hybrid hosts and setting ulimits is not permitted in
# some sandboxes; runc with no default ulimits works on both.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
  say "wrote $CONF (runtime=runc, default_ulimits=[])"
}

configure_podman() {
  local err
  if [ ! -e "$CONF" ]; then
    # No config: trial with podman's defaults first; a working engine needs nothing.
    if err=$(podman_trial); then
      say "podman run works with default settings; $CONF left absent"
      return 0
    fi
    say "podman trial run failed with defaults: $(printf '%s' "$err" | tail -n1)"
    write_conf
  else
    if err=$(podman_trial); then
      say "podman run works with existing $CONF; left unchanged"
      return 0
    fi
    case "$err" in
      *"cgroups in hybrid mode"*|*[Rr][Ll][Ii][Mm][Ii][Tt]*|*"crun:"*)
        say "podman trial run failed with a known crun/ulimit error"
        write_conf ;;
      *)
        die "podman run fails and the cause is not one this script knows how to fix: $(printf '%s' "$err" | tail -n3). Check $CONF and run: podman run --rm $TRIAL_IMAGE /bin/busybox true" ;;
    esac
  fi
  err=$(podman_trial) || die "podman run still fails after writing $CONF: $(printf '%s' "$err" | tail -n3). To debug, run: podman --log-level=debug run --rm $TRIAL_IMAGE /bin/busybox true"
  say "podman run works"
}

main() {
  say "checking container engines"
  local have_engine=""
  if engine_works podman; then
    have_engine=podman
    say "podman info works"
  elif engine_works docker; then
    have_engine=docker
    say "docker info works (a docker engine is reachable)"
  else
    say "no working podman or docker engine found"
    apt_install podman runc uidmap slirp4netns
    engine_works podman || die "podman is installed but 'podman info' fails: $(podman info 2>&1 | tail -n2 | tr '\n' ' ')To debug, run: podman info"
    have_engine=podman
    say "podman info works"
  fi

  # The tests build FROM scratch images with a static busybox, and the offline base
  # image is made with debootstrap; git is used for git-sourced resources; catatonit
  # is the pause process `podman kube play` needs (the Kubernetes tier plays generated pods).
  apt_install busybox-static debootstrap git catatonit
  [ -x /bin/busybox ] || die "/bin/busybox missing after installing busybox-static"

  if [ "$have_engine" = podman ]; then
    apt_install runc
    configure_podman
  else
    say "using docker; podman configuration skipped"
  fi
  say "done: engine=$have_engine"
}

main "$@"
