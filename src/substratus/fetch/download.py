"""Download the files of a `Resolved` listing into a partial directory, resumably, verified.

Each file is appended to `<partial>/<path>`. Bytes already there (an attempt
killed with -9, a dropped connection) are kept: they are hashed again from
disk, and the source is asked only for the rest, with a validator (S3
If-Match, HTTP If-Range) so a prefix of one version is never completed with
bytes of another. A source that cannot resume starts the file again.

A file counts as downloaded only when its size is the listed one and every
digest the source gave matches; a mismatch removes the file and raises
`DigestMismatchError` naming both digests. Called by `cache.Cache.fetch` only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from substratus.fetch.digests import Hashers, ManifestFile, algorithm
from substratus.fetch.errors import DigestMismatchError, FetchError, SourceChangedError
from substratus.fetch.listing import RemoteFile, Source
from substratus.fetch.progress import Meter

CHUNK = 1 << 20
ATTEMPTS = 4


class Interrupted(Exception):
    """The transfer stopped part-way (a dropped connection, a timeout): the next attempt resumes."""


def download_all(source: Source, uri: str, files: Sequence[RemoteFile], partial: Path, meter: Meter,
                 *, workers: int = 4, sleep: Callable[[float], None] | None = None) -> list[ManifestFile]:
    """Download every file (several at once); their sizes and SHA-256s, in listing order."""
    def one(f: RemoteFile) -> ManifestFile:
        out = download_file(source, uri, f, partial / f.path, meter, sleep=sleep)
        meter.file_done()
        return out

    if len(files) <= 1 or workers <= 1:
        return [one(f) for f in files]
    with ThreadPoolExecutor(max_workers=min(workers, len(files)), thread_name_prefix="fetch") as pool:
        return list(pool.map(one, files))


def download_file(source: Source, uri: str, f: RemoteFile, dest: Path, meter: Meter,
                  *, sleep: Callable[[float], None] | None = None) -> ManifestFile:
    """One file, resumed from what `dest` holds, retried on interruptions; verified before it returns."""
    pause = sleep or time.sleep
    dest.parent.mkdir(parents=True, exist_ok=True)
    counted = _Counted()
    for attempt in range(ATTEMPTS):
        try:
            hashers, size = _attempt(source, f, dest, meter, counted)
            break
        except Interrupted as err:
            if attempt == ATTEMPTS - 1:
                raise FetchError(f"{uri}: {f.path}: the transfer kept stopping part-way ({err})", uri=uri,
                                 hint="fetch again: the bytes already on disk are kept and only the rest "
                                      "is downloaded") from err
            pause(min(2.0 ** attempt, 10.0))
    _verify(uri, f, dest, hashers, size)
    return ManifestFile(path=f.path, size=size, sha256=hashers.digest("sha256").partition(":")[2])


@dataclass
class _Counted:
    """How many of a file's bytes the meter counts as done, across attempts."""

    n: int = 0

    def reset_to(self, have: int, meter: Meter) -> None:
        if have >= self.n:
            meter.resumed(have - self.n)
        else:
            meter.restart_file(self.n - have)
        self.n = have


def _attempt(source: Source, f: RemoteFile, dest: Path, meter: Meter, counted: _Counted) -> tuple[Hashers, int]:
    """Hash what is on disk, fetch the rest; the hashers and the size."""
    have = dest.stat().st_size if dest.exists() else 0
    if (f.size is not None and have > f.size) or (f.size is None and have):
        have = _truncate(dest)
    hashers = Hashers(f.expect, f.size)
    if have:
        _hash_prefix(dest, hashers, have)
    counted.reset_to(have, meter)
    if f.size is not None and have == f.size:
        return hashers, have
    stream = source.open(f, have)
    try:
        if stream.start != have:  # the source cannot resume (or the object changed): begin again
            have = _truncate(dest)
            counted.reset_to(have, meter)
            hashers = Hashers(f.expect, f.size)
        with dest.open("ab") as out:
            for chunk in stream.chunks:
                have += len(chunk)
                if f.size is not None and have > f.size:
                    raise SourceChangedError(f"{f.location}: the source sent more than the {f.size} bytes it "
                                             "listed", hint="the object changed while it was read: fetch again")
                out.write(chunk)
                hashers.update(chunk)
                meter.add(len(chunk))
                counted.n += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    finally:
        stream.close()
    if f.size is not None and have < f.size:
        raise Interrupted(f"{have} of {f.size} bytes")
    hashers.skip = stream.skip_checks
    return hashers, have


def _verify(uri: str, f: RemoteFile, dest: Path, hashers: Hashers, size: int) -> None:
    usable = [d for d in f.expect if algorithm(d) not in hashers.skip]
    bad = hashers.mismatches(usable)
    if bad:
        dest.unlink(missing_ok=True)
        expected, actual = bad[0]
        raise DigestMismatchError(uri=uri, path=f.path, expected=expected, actual=actual,
                                  what=f"{algorithm(expected)} digest",
                                  hint="the bytes were corrupted on the way or on disk, or the source lies about "
                                       "them; the file was removed: fetch again to download it anew")


def _truncate(dest: Path) -> int:
    with dest.open("wb"):
        pass
    return 0


def _hash_prefix(dest: Path, hashers: Hashers, length: int) -> None:
    with dest.open("rb") as fh:
        left = length
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            hashers.update(chunk)
            left -= len(chunk)
