"""Unpack a downloaded .tar, .tar.gz, .tgz or .zip into an entry, safely.

Only regular files and directories are written. Refused, with the member
named: absolute paths, '..' segments and anything else that would land outside
the entry; symbolic and hard links (even ones pointing inside: an entry is a
plain tree, so its canonical manifest means what it says); devices, FIFOs and
sockets. Sizes are bounded by what is actually written, not by what headers
claim: `max_bytes` in all (a zip bomb stops at the limit) and `max_members`.
Each file is hashed while written, so the manifest needs no second read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

from substratus.fetch.digests import ManifestFile
from substratus.fetch.errors import ArchiveError
from substratus.fetch.listing import safe_path

CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 256 << 30      # unpacked bytes in all
    max_members: int = 200_000


def unpack(archive: Path, kind: str, dest: Path, *, uri: str, limits: ArchiveLimits = ArchiveLimits()
           ) -> list[ManifestFile]:
    """Unpack `archive` (".tar", ".tar.gz", ".tgz", ".zip") into `dest`; the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest, uri, limits)
    try:
        if kind == ".zip":
            _unzip(archive, writer)
        else:
            _untar(archive, writer)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{uri}: not a readable {kind} archive: {type(err).__name__}: {err}", uri=uri,
                                 hint="check that the URL serves the archive its name says") from err
    return writer.files


class _Writer:
    def __init__(self, dest: Path, uri: str, limits: ArchiveLimits) -> None:
        self.dest = dest
        self.uri = uri
        self.limits = limits
        self.written = 0
        self.members = 0
        self.files: list[ManifestFile] = []
        self.seen: set[str] = set()

    def member(self, name: str) -> Path:
        """The target of a member (checked), counting it."""
        self.members += 1
        if self.members > self.limits.max_members:
            self.refuse(name, f"more than {self.limits.max_members} members")
        clean = name.rstrip("/")
        while clean.startswith("./"):
            clean = clean[2:]
        try:
            rel = safe_path(clean)
        except ValueError:
            self.refuse(name, "its path is absolute, has '..' or empty segments, or would leave the entry")
        target = self.dest / rel
        if not target.resolve().is_relative_to(self.dest.resolve()):
            self.refuse(name, "it would be written outside the entry")
        return target

    def directory(self, name: str) -> None:
        if name.strip("/") in ("", "."):
            return
        target = self.member(name)
        if target.exists() and not target.is_dir():
            self.refuse(name, "a file of the same name came first")
        target.mkdir(parents=True, exist_ok=True)

    def file(self, name: str, source: IO[bytes]) -> None:
        target = self.member(name)
        rel = target.relative_to(self.dest).as_posix()
        if rel in self.seen or target.exists():
            self.refuse(name, "the archive holds it twice (or a directory of that name)")
        self.seen.add(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with open(target, "xb") as out:
            for chunk in _read(source):
                size += len(chunk)
                self.written += len(chunk)
                if self.written > self.limits.max_bytes:
                    self.refuse(name, f"the unpacked archive exceeds {self.limits.max_bytes} bytes")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        self.files.append(ManifestFile(path=rel, size=size, sha256=h.hexdigest()))

    def refuse(self, name: str, why: str) -> None:
        raise ArchiveError(f"{self.uri}: refusing archive member {name!r}: {why}", uri=self.uri,
                                 hint="only plain files and directories inside the archive are unpacked; "
                                      "rebuild it without links, devices or paths outside its root")


def _read(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        yield chunk


def _untar(archive: Path, writer: _Writer) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        for member in _members(tar):
            if member.isdir():
                writer.directory(member.name)
            elif member.isfile():
                source: Optional[IO[bytes]] = tar.extractfile(member)
                assert source is not None
                writer.file(member.name, source)
            else:
                what = "a link" if member.issym() or member.islnk() else "a device, FIFO or other special file"
                writer.refuse(member.name, f"it is {what}")


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:  # streamed: never the whole member list in memory
        yield member


def _unzip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                writer.directory(info.filename)
            elif mode and not (stat.S_ISREG(mode) or mode & 0o170000 == 0):
                writer.refuse(info.filename, "it is a link or a special file")
            else:
                with zf.open(info) as source:
                    writer.file(info.filename, source)
