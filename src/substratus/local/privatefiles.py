"""$SUBSTRATUS_HOME is private: the directory 0700, the files in it 0600.

It holds the API token, the SQLite store (notebook tokens, git URLs), logs and
loaded data. Under a umask of 022 all of that was readable by every user of
the machine. The daemon sets umask 077 at start (so everything it and its
threads create is private) and `secure_home` tightens what an older version
left behind. Files that must never be seen half-written (the token, the
endpoint file) are written to a temporary file, fsynced and renamed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILES = ("state.db", "state.db-wal", "state.db-shm", "token", "controlplane.json", "controlplane.log",
                 "controlplane.lock")


def secure_home(home: Path) -> None:
    """Create `home` 0700, or make an existing one (ours) 0700 and its top-level state files 0600."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = home.stat()
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(home, 0o700)
    for name in PRIVATE_FILES:
        p = home / name
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(p, 0o600)


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600: readers see the old or the new, never half."""
    import tempfile  # here: every `sub` command imports this module, few write a private file

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_private(path: Path, limit: int = 4096) -> str:
    """A small private file's text, without following a link planted in its place."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as fh:
        return fh.read(limit)


def open_private_log(path: Path) -> int:
    """An append-only fd for a log file, created 0600 whatever the caller's umask."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
