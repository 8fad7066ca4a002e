"""Which paths the sync accepts, and file operations that never leave DIR.

The container side of `sub notebook DIR` is not trusted: code in the notebook is root in
its container and can replace `find`, `stat` and `tar` there, so every path it lists or
sends may be crafted (`.//etc/cron.d/x`, `a/../../x`, a name with a newline in it, `.git/
hooks/post-checkout`). `problem` says what is wrong with a path from either side; a path with
a problem is never read, written or deleted. The operations below reach a file under DIR one
component at a time from DIR's own descriptor, with O_NOFOLLOW on each, so no link (planted or
the user's own) takes a write or a delete out of DIR. Called by `sync.sides.LocalDir` and
`sync.container.ContainerDir`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

MAX_PATH = 4096   # bytes, as PATH_MAX
MAX_NAME = 255    # bytes per component, as NAME_MAX
# Version-control metadata holds hooks that tools on the host run: never synced, whatever a
# .gitignore (which the notebook can edit) re-includes.
NEVER = frozenset({".git", ".hg", ".svn"})
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def problem(path: str) -> Optional[str]:
    """Why `path` (relative, posix) must not be synced, or None when it may."""
    if not path:
        return "an empty path"
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        return "a NUL, newline or other control character in the path"
    if path.startswith("/"):
        return "an absolute path"
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        return f"longer than {MAX_PATH} bytes"
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return "an empty, '.' or '..' component"
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME:
            return f"a component longer than {MAX_NAME} bytes"
        if part in NEVER:
            return f"version-control metadata ({part}/) never syncs"
    return None


@contextlib.contextmanager
def parent_fd(root: Path, rel: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
    """(descriptor of the directory holding `rel`, its last component), reached from `root`
    without following links; `create` makes missing directories on the way (mode 0755)."""
    if problem(rel):
        raise PermissionError(f"refused path {rel!r}: {problem(rel)}")
    *dirs, name = rel.split("/")
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in dirs:
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd, name
    finally:
        os.close(fd)


def lstat(root: Path, rel: str) -> Optional[os.stat_result]:
    """The file's own status (a link is not followed), or None when it is not there."""
    try:
        with parent_fd(root, rel) as (fd, name):
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_regular(root: Path, rel: str, limit: int) -> Optional[tuple[bytes, os.stat_result]]:
    """A regular file's bytes and status (None: gone, not a regular file, or bigger than `limit`)."""
    try:
        with parent_fd(root, rel) as (dfd, name):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = fh.read(limit + 1)
    return (data, st) if len(data) <= limit else None


def write_atomic(root: Path, rel: str, tmp_name: str, content: bytes, mode: int, mtime: float) -> None:
    """Write `rel` under `root` as a temporary file renamed into place, all from one directory
    descriptor: a link anywhere on the way is an error, never followed."""
    with parent_fd(root, rel, create=True) as (dfd, name):
        fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
                fh.flush()  # before the times are set: a later write would move mtime again
                os.fchmod(fh.fileno(), mode)
                os.utime(fh.fileno(), (mtime, mtime))
            os.replace(tmp_name, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name, dir_fd=dfd)
            raise


def unlink(root: Path, rel: str) -> None:
    """Remove `rel` (a link itself, never what it points to); gone already is fine."""
    try:
        with parent_fd(root, rel) as (fd, name):
            os.unlink(name, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        pass
