"""Reading an object's log files without trusting what a container wrote.

A load or training container has its run's `logs/` directory bind-mounted
read-write, so it decides what lies there: a symlink to `/etc/shadow`, a
directory swapped for a link to `/`, a FIFO, a 100 GB file. `sub logs` runs
in the control plane (often as root), so every file is opened relative to the
object's own directory, one component at a time with O_NOFOLLOW, must be a
regular file, and only its tail is read. Called by `ControlPlane.log_files`
and `ControlPlane.logs`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Optional

MAX_TAIL_BYTES = 256 * 1024   # per file
MAX_FILES = 200               # per object
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def inside(root: Path, path: Path) -> bool:
    """Lexically inside `root` (no '..' tricks); links are dealt with when opening."""
    try:
        Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        return False
    return True


def list_files(object_dir: Path, run_dir: Optional[Path]) -> list[Path]:
    """The log files `sub logs` shows: regular files only, links never followed, at most MAX_FILES."""
    files = [p for p in _regular_children(object_dir) if p.suffix == ".log"]
    if run_dir is not None and inside(object_dir, run_dir):
        files += [p for p in (run_dir / "build.log", run_dir / "job.log") if _is_regular(p)]
        files += _walk_regular(run_dir / "logs", MAX_FILES)
    return files[:MAX_FILES]


def _is_regular(p: Path) -> bool:
    try:
        return stat.S_ISREG(p.lstat().st_mode)
    except OSError:
        return False


def _regular_children(d: Path) -> list[Path]:
    try:
        with os.scandir(d) as it:
            return sorted(Path(e.path) for e in it if e.is_file(follow_symlinks=False))
    except OSError:
        return []


def _walk_regular(top: Path, limit: int) -> list[Path]:
    out: list[Path] = []
    if not top.is_dir() or top.is_symlink():
        return out
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames) if _is_regular(Path(dirpath) / f)]
        if len(out) >= limit:
            break
    return out[:limit]


def open_beneath(root: Path, path: Path) -> int:
    """A read-only fd of the regular file `path`, reached from `root` without following any link."""
    if not inside(root, path):
        raise PermissionError(f"{path} is outside {root}")
    parts = Path(os.path.normpath(path)).relative_to(os.path.normpath(root)).parts
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        file_fd = os.open(parts[-1], FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise PermissionError(f"{path} is not a regular file")
    return file_fd


def read_tail(root: Path, path: Path, limit: int = MAX_TAIL_BYTES) -> list[str]:
    """The last `limit` bytes of `path` as lines, saying how much was left out; a line saying why
    when the file cannot be read safely (a link, a FIFO, outside `root`)."""
    try:
        fd = open_beneath(root, path)
    except OSError as err:
        return [f"(not shown: {err.strerror or err}; links and special files are never read)"]
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        skipped = max(0, size - limit)
        fh.seek(skipped)
        data = fh.read(limit)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if skipped:
        lines = [f"(the first {skipped} bytes are not shown; this is the last {limit // 1024} KiB)"] + lines[1:]
    return lines
