"""What resolving a URI yields, and the narrow interface every kind of source implements.

`Resolved` lists the files a URI stands for *now*, each with the identity the
source gives its bytes (an S3 ETag, a hub commit's file hash, an HTTP ETag or
Last-Modified, a local file's SHA-256). Its `identity` is the digest of that
listing: equal identities mean the same bytes (so the cache can answer without
reading them again); a changed object gives a new identity. The entry itself is
keyed by the digest of the verified bytes (`digests.manifest_digest`), never by
the URI.

A `Source` (one per scheme: s3, http, hub, local) resolves a URI and opens a
file at a byte offset, checking that the bytes are still the resolved version.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Optional, Protocol

Kind = Literal["file", "tree"]
UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_PATH = 4096


def safe_path(path: str) -> str:
    """A relative path that stays inside an entry, or ValueError saying why not.

    No '.', '..' or empty segments, no leading '/', no control characters or
    backslashes (they would change the canonical manifest's meaning).
    """
    parts = path.split("/")
    if (not path or len(path) > MAX_PATH or path.startswith("/") or UNSAFE.search(path)
            or any(p in ("", ".", "..") for p in parts)):
        raise ValueError(f"{path!r} is not a safe relative file path")
    return path


@dataclass(frozen=True)
class RemoteFile:
    path: str                   # relative path inside the entry ('/'-separated, checked safe)
    size: Optional[int]         # None when the source does not say (an HTTP server without Content-Length)
    version: str                # the source's identity of these bytes: 'etag:"..."', 'sha256:...', ...
    location: str               # what the source reads: an S3 key, a URL, a local path
    expect: tuple[str, ...] = ()  # digests the bytes must have (sha256:, md5:, gitsha1:)
    validator: str = ""         # sent to check a ranged read is of the same version (ETag or Last-Modified)


@dataclass(frozen=True)
class Resolved:
    uri: str                    # the URI as given (for messages and `ls`)
    origin: str                 # where the bytes come from, without credentials: endpoint + bucket, host, repo
    kind: Kind                  # one file, or a tree of files
    files: tuple[RemoteFile, ...]
    revision: str = ""          # a hub commit sha; "" elsewhere
    archive: Optional[str] = None  # http(s) archives: ".tar", ".tar.gz", ".tgz" or ".zip", unpacked when fetched
    stable: bool = True         # False: the server gave no ETag or Last-Modified; the bytes decide the entry

    @property
    def total_size(self) -> Optional[int]:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def identity(self) -> str:
        """Hex digest of what the source says about its bytes and where they are (not of the URI's spelling).

        Where is part of it because an ETag or Last-Modified identifies bytes only for the object that
        gave it; sources that know their bytes' SHA-256 up front share entries by content anyway.
        """
        doc = {"origin": self.origin, "kind": self.kind, "revision": self.revision, "archive": self.archive,
               "files": [[f.path, f.size, f.version, f.location] for f in sorted(self.files, key=lambda f: f.path)]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Stream:
    """The bytes of one file from `start` on. A source that cannot resume returns start=0."""

    start: int
    chunks: Iterator[bytes]
    skip_checks: frozenset[str] = field(default_factory=frozenset)  # algorithms the response showed to be unusable
    close: Callable[[], None] = lambda: None  # releases the connection when the download ends


class Source(Protocol):
    """One kind of source. Instances hold a client configured with the credentials."""

    def resolve(self) -> Resolved: ...

    def open(self, file: RemoteFile, start: int) -> Stream: ...
