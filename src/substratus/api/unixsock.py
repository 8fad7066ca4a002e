"""The control plane's Unix socket: how the CLI knows it talks to its own daemon.

A TCP port on 127.0.0.1 can be taken by anyone on the machine once the daemon
died (kill -9 leaves the endpoint file behind). The socket lives in the 0700
`$SUBSTRATUS_HOME`, so only its owner (or root) can have created it, and the
client checks the peer's uid (SO_PEERCRED) before it sends the token.
Paths longer than a socket address allows (108 bytes) are reached through
/proc/self/fd on Linux. Used by `api.daemon` (bind) and `cli.http1` (connect).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Optional, TypeVar

from substratus.errors import ControlPlaneError

MAX_ADDRESS = 100  # sun_path is 108 bytes with its NUL; keep a margin
T = TypeVar("T")


def _at(path: Path, use: Callable[[str], T]) -> T:
    """Call `use` with an address for `path` that fits in sun_path."""
    if len(str(path)) < MAX_ADDRESS or not os.path.isdir("/proc/self/fd"):
        return use(str(path))
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return use(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


def bind(path: Path) -> socket.socket:
    """A listening socket at `path` (a stale one from a killed daemon is replaced), mode 0600."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        _at(path, sock.bind)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def peer_uid_pid(sock: socket.socket) -> tuple[int, int]:
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid, pid


def connect(path: Path, timeout: Optional[float]) -> tuple[socket.socket, int]:
    """A connection to our own daemon, and its pid; ControlPlaneError when the peer is someone else."""
    st = path.lstat()  # FileNotFoundError when no daemon ever ran here
    me = os.geteuid()
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid not in (me, 0):
        raise ControlPlaneError(f"{path} is not a socket owned by you; refusing to send the API token to it",
                                hint=f"remove {path} and run `sub up`")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _at(path, sock.connect)
        uid, pid = peer_uid_pid(sock) if hasattr(socket, "SO_PEERCRED") else (me, 0)
    except BaseException:
        sock.close()
        raise
    if uid not in (me, 0):
        sock.close()
        raise ControlPlaneError(f"the process answering on {path} runs as uid {uid}, not as you; "
                                "refusing to send the API token to it", hint=f"remove {path} and run `sub up`")
    return sock, pid
