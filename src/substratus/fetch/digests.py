"""Digests: what the cache checks bytes against, and the canonical manifest of an entry.

A digest is written `ALGORITHM:HEX`:

    sha256:<64 hex>   the bytes' SHA-256 (file:// sources, hub LFS files, S3 full-object
                      checksums, a user's `digest`)
    md5:<32 hex>      an S3 object's ETag when it is the MD5 of the bytes (single-part
                      uploads without SSE-KMS)
    gitsha1:<40 hex>  a hub file kept in git (not LFS): git's blob id, SHA-1 of
                      "blob <size>\\0" + bytes

The canonical manifest of a tree of files is the `sha256sum` output of its files,
sorted by path (byte order), paths relative with '/' and no './':

    <sha256 hex>  <path>\\n

and an entry's key is the SHA-256 of that text. A person can recompute it:

    cd DIR && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum

Pure code apart from `Hashers`, which only accumulates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}|gitsha1:[0-9a-f]{40})$")
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
ALGORITHMS = ("sha256", "md5", "gitsha1")


def check_user_digest(digest: str) -> str:
    """A user-given digest, lower-cased; ValueError when it is not `sha256:<64 hex>`."""
    value = digest.strip().lower()
    if not SHA256.match(value):
        raise ValueError(f"digest {digest!r} is not sha256:<64 hex digits> (the SHA-256 of a single file, or of "
                         "the canonical manifest of a directory: see docs/uris.md)")
    return value


def algorithm(digest: str) -> str:
    return digest.partition(":")[0]


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    sha256: str  # hex, no prefix


def manifest_text(files: Iterable[ManifestFile]) -> str:
    """The canonical manifest (sha256sum's format, sorted by the UTF-8 bytes of the path)."""
    ordered = sorted(files, key=lambda f: f.path.encode())
    return "".join(f"{f.sha256}  {f.path}\n" for f in ordered)


def manifest_digest(files: Iterable[ManifestFile]) -> str:
    """`sha256:<hex>` of the canonical manifest: the entry key (without its prefix) and a tree's `digest`."""
    return "sha256:" + hashlib.sha256(manifest_text(files).encode()).hexdigest()


class Hashers:
    """SHA-256 always, plus the algorithms the expected digests name, fed chunk by chunk."""

    def __init__(self, expected: Iterable[str], size: int | None) -> None:
        wanted = {algorithm(d) for d in expected}
        self.skip: frozenset[str] = frozenset()  # algorithms the source said not to check (S3 SSE-KMS ETags)
        self._h: dict[str, Any] = {"sha256": hashlib.sha256()}
        if "md5" in wanted:
            self._h["md5"] = hashlib.md5(usedforsecurity=False)
        if "gitsha1" in wanted and size is not None:
            blob = hashlib.sha1(usedforsecurity=False)
            blob.update(f"blob {size}\0".encode())
            self._h["gitsha1"] = blob

    def update(self, chunk: bytes) -> None:
        for h in self._h.values():
            h.update(chunk)

    def digest(self, name: str) -> str:
        h = self._h.get(name)
        return f"{name}:{h.hexdigest()}" if h is not None else ""

    def mismatches(self, expected: Iterable[str]) -> list[tuple[str, str]]:
        """(expected, actual) for every expected digest the bytes do not have."""
        out = []
        for want in expected:
            got = self.digest(algorithm(want))
            if got and got != want:
                out.append((want, got))
        return out
