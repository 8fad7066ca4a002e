"""The transport interface of the sync (`Side`) and its local-directory implementation.

A side lists its files with content digests, reads and writes whole files,
and deletes them. Writes and deletes are conditional: each names what the
scan saw at that path (`Expect`: an Entry, or None for "no file"), and a side
leaves a file alone if it changed since; the next round then sees both
changes and keeps both copies. Writes are atomic (a temporary file renamed
into place), so neither a reader nor an interrupted sync ever sees half a file.

Digests are cached per (mtime, size) and trusted only for files whose mtime
is older than the scan that hashed them by more than the clock's grain (git's
"racily clean" rule): a file rewritten within the same second at the same
size is hashed again rather than missed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from substratus.sync import paths
from substratus.sync.decide import Entry
from substratus.sync.ignore import TEMP_MARK, Excludes
from substratus.sync.paths import NEVER, problem

DEFAULT_MAX_SIZE = 64 * 1024 * 1024
Expect = Mapping[str, Optional[Entry]]


@dataclass(frozen=True)
class FileData:
    content: bytes
    mtime: float
    executable: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class ScanError(Exception):
    """A side could not be listed completely this round; the round is skipped (never read as deletions)."""


class Side(Protocol):
    label: str        # for people: "DIR" or "notebook"
    too_big: set[str]  # files left out because they exceed the size limit (reported once by the caller)
    refused: dict[str, str]  # paths never synced (sync.paths.problem) -> why (reported once by the caller)

    def scan(self) -> dict[str, Entry]:
        """Every file not excluded, by relative posix path. Raises ScanError when incomplete."""

    def read(self, paths: list[str]) -> dict[str, FileData]:
        """The files' contents; a file that vanished since the scan is left out."""

    def write(self, files: Mapping[str, FileData], expect: Expect) -> list[str]:
        """Write each file atomically unless the path changed since the scan; returns the paths skipped."""

    def delete(self, paths: list[str], expect: Expect) -> list[str]:
        """Delete each file unless it changed since the scan; returns the paths skipped."""


@dataclass
class Cached:
    mtime: float
    size: int
    digest: str
    hashed_at: float


def trusted(c: Optional[Cached], mtime: float, size: int, grain: float) -> bool:
    return c is not None and c.mtime == mtime and c.size == size and mtime < c.hashed_at - grain


class LocalDir:
    """The directory on this machine (DIR of `sub notebook DIR`)."""

    def __init__(self, root: Path, excludes: Callable[[], Excludes], *, max_size: int = DEFAULT_MAX_SIZE,
                 label: str = "DIR", clock: Callable[[], float] = time.time) -> None:
        self.root, self.excludes, self.max_size, self.label, self.clock = root, excludes, max_size, label, clock
        self.cache: dict[str, Cached] = {}
        self.too_big: set[str] = set()
        self.refused: dict[str, str] = {}

    def scan(self) -> dict[str, Entry]:
        ex, now, out = self.excludes(), self.clock(), {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(d for d in dirnames if not ex.directory(prefix + d) and d not in NEVER)
            for name in filenames:
                rel = prefix + name
                why = problem(rel)
                if why:
                    self.refused[rel] = why
                elif not ex.file(rel):
                    entry = self._entry(rel, now)
                    if entry is not None:
                        out[rel] = entry
        return out

    def _entry(self, rel: str, now: float) -> Optional[Entry]:
        st = paths.lstat(self.root, rel)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None  # gone, or symlinks, sockets, fifos: not synced
        if st.st_size > self.max_size:
            self.too_big.add(rel)
            return None
        c = self.cache.get(rel)
        if not trusted(c, st.st_mtime, st.st_size, grain=0.01):
            got = paths.read_regular(self.root, rel, self.max_size)
            if got is None:
                return None
            c = self.cache[rel] = Cached(st.st_mtime, st.st_size, hashlib.sha256(got[0]).hexdigest(), now)
        assert c is not None
        return Entry(digest=c.digest, mtime=st.st_mtime, size=st.st_size)

    def read(self, paths_: list[str]) -> dict[str, FileData]:
        out = {}
        for rel in paths_:
            got = paths.read_regular(self.root, rel, self.max_size) if not problem(rel) else None
            if got is not None:
                out[rel] = FileData(got[0], got[1].st_mtime, bool(got[1].st_mode & 0o111))
        return out

    def unchanged(self, rel: str, want: Optional[Entry]) -> bool:
        st = paths.lstat(self.root, rel)
        if st is None:
            return want is None
        return want is not None and st.st_mtime == want.mtime and st.st_size == want.size

    def allowed(self, rel: str) -> bool:
        """What arrives from the other side lands in DIR only at a valid, not excluded path."""
        why = problem(rel) or ("excluded" if self.excludes().file(rel) else None)
        if why:
            self.refused[rel] = why
        return why is None

    def write(self, files: Mapping[str, FileData], expect: Expect) -> list[str]:
        skipped = []
        for rel, data in files.items():
            if not self.allowed(rel) or not self.unchanged(rel, expect.get(rel)):
                skipped.append(rel)
                continue
            tmp = f".{rel.rsplit('/', 1)[-1][:200]}{TEMP_MARK}{secrets.token_hex(4)}"
            try:
                paths.write_atomic(self.root, rel, tmp, data.content, 0o755 if data.executable else 0o644, data.mtime)
            except OSError:  # e.g. a file or a link where a directory should be: reported, retried next round
                skipped.append(rel)
        return skipped

    def delete(self, paths_: list[str], expect: Expect) -> list[str]:
        skipped = []
        for rel in paths_:
            if not self.allowed(rel) or expect.get(rel) is None or not self.unchanged(rel, expect.get(rel)):
                skipped.append(rel)
                continue
            try:
                paths.unlink(self.root, rel)
            except OSError:
                skipped.append(rel)
        return skipped
