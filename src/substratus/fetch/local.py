"""file:// sources: a file or a directory on the machine that runs the fetch.

Resolving reads every byte once to know its SHA-256 (that is the identity of a
local file: names and times say nothing reliable); fetching copies the bytes
and checks them against that digest. Symbolic links to files are followed (a
Hugging Face cache snapshot is made of them); links to directories, sockets,
FIFOs and devices are refused, so the listing is finite and plain.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from substratus.fetch.download import CHUNK
from substratus.fetch.errors import FetchError, SourceNotFoundError
from substratus.fetch.listing import RemoteFile, Resolved, Stream, safe_path
from substratus.resources.uris import FileURI

MAX_FILES = 100_000


class LocalSource:
    def __init__(self, uri: FileURI, credentials: Mapping[str, str] | None = None, *, raw: str = "") -> None:
        self.uri = uri
        self.raw = raw or str(uri)

    def resolve(self) -> Resolved:
        root = Path(self.uri.path)
        try:
            info = root.stat()
        except FileNotFoundError as err:
            raise SourceNotFoundError(f"{self.raw}: {root} does not exist on this machine", uri=self.raw,
                                      hint="file:// paths are read where the fetch runs (the control plane's "
                                           "machine, or the pod)") from err
        except OSError as err:
            raise FetchError(f"{self.raw}: cannot read {root}: {err.strerror}", uri=self.raw) from err
        if stat.S_ISREG(info.st_mode):
            return Resolved(self.raw, f"file {root}", "file", (self._file(root, root.name),))
        if not stat.S_ISDIR(info.st_mode):
            raise FetchError(f"{self.raw}: {root} is neither a file nor a directory", uri=self.raw)
        files = [self._file(path, rel) for path, rel in self._walk(root)]
        if not files:
            raise SourceNotFoundError(f"{self.raw}: {root} holds no files", uri=self.raw)
        return Resolved(self.raw, f"file {root}", "tree", tuple(files))

    def _walk(self, root: Path) -> Iterator[tuple[Path, str]]:
        count = 0
        for current, dirs, names in os.walk(root, onerror=self._raise):
            for d in dirs:
                if (Path(current) / d).is_symlink():
                    raise FetchError(f"{self.raw}: {Path(current) / d} is a link to a directory, which is not "
                                     "followed", uri=self.raw, hint="copy the directory, or point the URI at it")
            dirs.sort()
            for name in sorted(names):
                path = Path(current) / name
                count += 1
                if count > MAX_FILES:
                    raise FetchError(f"{self.raw}: more than {MAX_FILES} files", uri=self.raw,
                                     hint="pack them into an archive, or name a smaller directory")
                try:
                    yield path, safe_path(path.relative_to(root).as_posix())
                except ValueError as err:
                    raise FetchError(f"{self.raw}: {path}: {err}", uri=self.raw) from err

    def _raise(self, err: OSError) -> None:
        raise FetchError(f"{self.raw}: cannot read {err.filename}: {err.strerror}", uri=self.raw)

    def _file(self, path: Path, rel: str) -> RemoteFile:
        h = hashlib.sha256()
        size = 0
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                raise FetchError(f"{self.raw}: {path} is not a regular file (sockets, FIFOs and devices are "
                                 "refused)", uri=self.raw)
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as err:
            raise FetchError(f"{self.raw}: cannot read {path}: {err.strerror}", uri=self.raw) from err
        digest = f"sha256:{h.hexdigest()}"
        return RemoteFile(path=rel, size=size, version=digest, location=str(path), expect=(digest,))

    def open(self, file: RemoteFile, start: int) -> Stream:
        try:
            fh = Path(file.location).open("rb")
            fh.seek(start)
        except OSError as err:
            raise FetchError(f"{self.raw}: cannot read {file.location}: {err.strerror}", uri=self.raw) from err

        def chunks() -> Iterator[bytes]:
            while chunk := fh.read(CHUNK):
                yield chunk

        return Stream(start=start, chunks=chunks(), close=fh.close)
