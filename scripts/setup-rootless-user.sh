#!/usr/bin/env bash
# Make a normal user able to run rootless podman (Debian 12 / Ubuntu, run as root).
#
#   scripts/setup-rootless-user.sh [USER]      (default: substratus-rootless)
#
# Called by `make test-rootless` (the rootless tier runs `sub` as this user) and
# useful for people: it is what a user needs before `podman` works without root.
# Idempotent; one line per step on stderr; a failure exits non-zero saying what to do.
#
# What it may change:
#   - apt-get install uidmap slirp4netns acl (and fuse-overlayfs on kernels older
#     than 5.13, which lack overlay mounts inside user namespaces)
#   - creates USER (useradd --create-home) and gives it 65536 subordinate uids/gids
#     in /etc/subuid and /etc/subgid, in a range no other user has
#   - /run/user/UID (podman's XDG_RUNTIME_DIR; normally made by systemd-logind)
#   - ~USER/.config/containers/storage.conf: driver "overlay" (native, or through
#     fuse-overlayfs on old kernels), written only when absent
#   - when USER cannot open /dev/net/tun (slirp4netns needs it for container
#     networking; Debian's default mode is 0666, some sandboxes have 0600), an ACL
#     entry for USER alone; the same for /dev/fuse when fuse-overlayfs is used
set -euo pipefail

USER_NAME=${1:-substratus-rootless}
SUBID_COUNT=65536

say() { printf 'setup-rootless-user: %s\n' "$*" >&2; }
die() { printf 'setup-rootless-user: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (creates a user, edits /etc/subuid). Run: sudo $0 $USER_NAME"

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed. To debug, run: apt-get install ${missing[*]}"
}

# Native overlay in a user namespace needs Linux 5.13 or later.
kernel_has_rootless_overlay() {
  local major minor
  IFS=. read -r major minor _ <<<"$(uname -r)"
  [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "${minor%%[!0-9]*}" -ge 13 ]; }
}

ensure_user() {
  if id "$USER_NAME" >/dev/null 2>&1; then
    say "user $USER_NAME exists"
  else
    useradd --create-home --user-group --shell /bin/bash "$USER_NAME"
    say "created user $USER_NAME"
  fi
}

# The first free start above every range already in /etc/subuid and /etc/subgid.
next_free_subid() {
  cat /etc/subuid /etc/subgid 2>/dev/null |
    awk -F: 'BEGIN { end = 100000 } NF == 3 && $2 + $3 > end { end = $2 + $3 } END { print end }'
}

ensure_subids() {
  local file missing=0
  for file in /etc/subuid /etc/subgid; do
    grep -q "^$USER_NAME:" "$file" 2>/dev/null || missing=1
  done
  if [ "$missing" = 0 ]; then
    say "subordinate ids: $(grep "^$USER_NAME:" /etc/subuid | head -n1)"
    return 0
  fi
  local start
  start=$(next_free_subid)
  grep -q "^$USER_NAME:" /etc/subuid 2>/dev/null || usermod --add-subuids "$start-$((start + SUBID_COUNT - 1))" "$USER_NAME"
  grep -q "^$USER_NAME:" /etc/subgid 2>/dev/null || usermod --add-subgids "$start-$((start + SUBID_COUNT - 1))" "$USER_NAME"
  say "subordinate ids for $USER_NAME: $start-$((start + SUBID_COUNT - 1))"
}

ensure_runtime_dir() {
  local dir=/run/user/$1
  install -d -m 0700 -o "$USER_NAME" -g "$(id -gn "$USER_NAME")" "$dir"
  say "runtime dir $dir"
}

ensure_storage_conf() {
  local home conf
  home=$(getent passwd "$USER_NAME" | cut -d: -f6)
  conf=$home/.config/containers/storage.conf
  if [ -e "$conf" ]; then
    say "$conf exists; left unchanged"
    return 0
  fi
  runuser -u "$USER_NAME" -- mkdir -p "$home/.config/containers"
  if [ "$1" = fuse ]; then
    printf '[storage]\ndriver = "overlay"\n\n[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n' >"$conf"
  else
    printf '[storage]\ndriver = "overlay"\n' >"$conf"
  fi
  chown "$USER_NAME:" "$conf"
  say "wrote $conf (overlay${1:+, $1})"
}

# Grant USER read/write on a device node it cannot open, with an ACL for USER alone.
grant_device() {
  local dev=$1
  [ -e "$dev" ] || die "$dev is missing; rootless podman needs it"
  if runuser -u "$USER_NAME" -- test -r "$dev" -a -w "$dev"; then
    say "$USER_NAME can open $dev"
    return 0
  fi
  local mode
  mode=$(stat -c %a "$dev")
  setfacl -m "u:$USER_NAME:rw" "$dev"
  say "granted $USER_NAME read/write on $dev (an ACL entry; its mode is $mode)"
}

check_podman() {
  local uid=$1 out
  out=$(runuser -u "$USER_NAME" -- env -i HOME="$(getent passwd "$USER_NAME" | cut -d: -f6)" \
        XDG_RUNTIME_DIR="/run/user/$uid" PATH=/usr/local/bin:/usr/bin:/bin \
        sh -c 'cd && podman info --format "rootless={{.Host.Security.Rootless}} storage={{.Store.GraphDriverName}}"' 2>&1) ||
    die "podman info fails for $USER_NAME: $out. To debug, run: runuser -u $USER_NAME -- podman info"
  say "podman as $USER_NAME: $(printf '%s' "$out" | tail -n1)"
}

main() {
  local overlay=native
  kernel_has_rootless_overlay || overlay=fuse
  apt_install uidmap slirp4netns acl
  if [ "$overlay" = fuse ]; then apt_install fuse-overlayfs; fi
  command -v podman >/dev/null || die "podman is not installed. Run: sudo scripts/setup-engine.sh"
  ensure_user
  ensure_subids
  local uid
  uid=$(id -u "$USER_NAME")
  ensure_runtime_dir "$uid"
  if [ "$overlay" = fuse ]; then ensure_storage_conf fuse; else ensure_storage_conf ""; fi
  grant_device /dev/net/tun
  if [ "$overlay" = fuse ]; then grant_device /dev/fuse; fi
  check_podman "$uid"
  say "done: $USER_NAME (uid $uid) runs rootless podman; run as it with:"
  say "  runuser -u $USER_NAME -- env XDG_RUNTIME_DIR=/run/user/$uid podman info"
}

main "$@"
