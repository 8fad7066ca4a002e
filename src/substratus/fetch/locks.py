"""File locks (flock) that serialise fetches across threads and processes.

`flock` locks belong to an open file description, so two threads that each
open the lock file exclude each other exactly as two processes do, and the
kernel releases a lock when its holder dies (kill -9 included): no stale lock
files to clean, no pids to check.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional


@contextmanager
def flocked(path: Path, *, shared: bool = False, on_wait: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hold `path` locked (exclusive, or shared) for the block; `on_wait` is called once if we must wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the description releases the lock


def is_locked(path: Path) -> bool:
    """Whether someone holds `path` now (for pruning partial downloads nobody is writing)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
