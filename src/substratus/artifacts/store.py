"""ArtifactStore: keys to files and directories on object storage or a mounted volume.

One interface for three places, chosen by the store URL in the settings:

    s3://BUCKET[/PREFIX]   S3 or anything speaking its API (MinIO, Ceph, moto), via s3fs;
                           endpoint from SUBSTRATUS_S3_ENDPOINT_URL, credentials the
                           usual AWS way (env, IRSA, instance profile)
    gs://BUCKET[/PREFIX]   Google Cloud Storage via gcsfs (Workload Identity or
                           GOOGLE_APPLICATION_CREDENTIALS); needs the `gcs` extra
    pvc://CLAIM[/PREFIX]   a ReadWriteMany volume: pods mount it with subPaths; code
                           that has it mounted (the operator, tests) reads it as a
                           local directory given as `mount`

Used inside pods by `python -m substratus.artifacts` (fetch inputs, upload
outputs), by the operator to judge a run's outputs, and by `sub` to upload
`dir` sources as tarballs. Errors are ArtifactError naming the key and store.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, List, Optional, Union  # List: `list` is a method name here

import fsspec

from substratus.errors import SubstratusError

Key = Union[str, PurePosixPath]
ENDPOINT_ENV = "SUBSTRATUS_S3_ENDPOINT_URL"


class ArtifactError(SubstratusError):
    """The artifact store could not be reached, or a key is missing or unsafe."""


@dataclass(frozen=True)
class StoreURL:
    scheme: str   # s3 | gs | pvc
    bucket: str   # bucket, or the claim's name
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "StoreURL":
        scheme, sep, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        scheme = "gs" if scheme == "gcs" else scheme
        if not sep or scheme not in ("s3", "gs", "pvc") or not bucket:
            raise ArtifactError(f"{url!r} is not an artifact store URL",
                                hint="use s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] or pvc://CLAIM[/PREFIX]")
        return cls(scheme, bucket, prefix.strip("/"))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")


def _filesystem(url: StoreURL, endpoint_url: Optional[str]) -> fsspec.AbstractFileSystem:
    if url.scheme == "s3":
        endpoint = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return fsspec.filesystem("s3", **options)
    if url.scheme == "gs":
        return fsspec.filesystem("gs", skip_instance_cache=True)
    return fsspec.filesystem("file")


class ArtifactStore:
    """Keys (`objects/dataset/ns/name/run/data`) relative to the store URL."""

    def __init__(self, url: str, *, endpoint_url: Optional[str] = None, mount: Optional[Path] = None,
                 fs: Optional[fsspec.AbstractFileSystem] = None) -> None:
        self.url = StoreURL.parse(url)
        if self.url.scheme == "pvc" and mount is None:
            raise ArtifactError(f"{self.url} is a volume: it can only be read where it is mounted",
                                hint="pass the mount point (--mount, or SUBSTRATUS_ARTIFACTS_MOUNT in pods)")
        self.fs = fs or _filesystem(self.url, endpoint_url)
        if self.url.scheme == "pvc":
            assert mount is not None
            self.root = str(Path(mount) / self.url.prefix) if self.url.prefix else str(Path(mount))
        else:
            self.root = f"{self.url.bucket}/{self.url.prefix}" if self.url.prefix else self.url.bucket

    # -- naming ---------------------------------------------------------------------------
    def path(self, key: Key) -> str:
        """The filesystem path of `key`; keys never leave the store."""
        parts = PurePosixPath(str(key).strip("/")).parts
        if not parts or any(p in ("..", "") for p in parts) or str(key).startswith("/"):
            raise ArtifactError(f"artifact key {str(key)!r} is not a relative path inside the store")
        return f"{self.root}/{'/'.join(parts)}"

    def uri(self, key: Key) -> str:
        """A URL people can use for `key` (status.url of a loaded dataset)."""
        return f"{self.url}/{str(key).strip('/')}"

    # -- queries --------------------------------------------------------------------------
    def exists(self, key: Key) -> bool:
        return bool(self._call("check", key, self.fs.exists, self.path(key)))

    def has_content(self, key: Key) -> bool:
        """A non-empty file, or a directory holding at least one file (the contract's 'wrote something')."""
        path = self.path(key)
        if not self._call("check", key, self.fs.exists, path):
            return False
        if self._call("check", key, self.fs.isfile, path):
            return int(self._call("check", key, self.fs.size, path) or 0) > 0
        return bool(self._call("list", key, self.fs.find, path))

    def list(self, key: Key) -> list[str]:
        """Keys of all files under `key`, relative to `key`."""
        base = self.path(key)
        found = self._call("list", key, self.fs.find, base)
        return sorted(str(p)[len(base):].lstrip("/") for p in found)

    def glob(self, pattern: Key) -> "List[str]":
        """Keys matching a glob pattern (`objects/dataset/ns/n/*/.succeeded`), relative to the store."""
        path = self.path(pattern)
        found = self._call("list", pattern, self.fs.glob, path)
        root = self.root.rstrip("/") + "/"
        return sorted(str(p).removeprefix(root) for p in found)

    def modified(self, key: Key) -> float:
        """When `key` was last written (seconds since the epoch); 0 when the store cannot say."""
        try:
            return float(self.fs.modified(self.path(key)).timestamp())
        except (OSError, ValueError, NotImplementedError, AttributeError):
            return 0.0

    def size(self, key: Key) -> int:
        return int(self._call("check", key, self.fs.size, self.path(key)) or 0)

    def sha256(self, key: Key) -> str:
        """`sha256:<hex>` of a file, read in chunks (a dataset can be large)."""
        h = hashlib.sha256()
        with self._call("read", key, self.fs.open, self.path(key), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return f"sha256:{h.hexdigest()}"

    def read_tail(self, key: Key, limit: int) -> bytes:
        """At most the last `limit` bytes of a file; b"" when it does not exist."""
        path = self.path(key)
        if not self._call("read", key, self.fs.exists, path):
            return b""
        size = self.size(key)
        return bytes(self._call("read", key, self.fs.cat_file, path, start=max(0, size - limit)))

    # -- bytes ----------------------------------------------------------------------------
    def read_bytes(self, key: Key) -> bytes:
        return bytes(self._call("read", key, self.fs.cat_file, self.path(key)))

    def write_bytes(self, key: Key, data: bytes) -> None:
        path = self.path(key)
        self._call("write", key, self.fs.makedirs, path.rsplit("/", 1)[0], exist_ok=True)
        self._call("write", key, self.fs.pipe_file, path, data)

    # -- files and directories ------------------------------------------------------------
    def upload_dir(self, local: Path, key: Key) -> int:
        """Replace `key` with the regular files under `local`; returns how many were uploaded.

        A job's container wrote `local`: a link in it (to /proc/self/environ, to the uploader's
        credentials) is never followed, nor is anything but a regular file read (issue 25)."""
        self.remove(key)
        count = 0
        for file in regular_files(Path(local)):
            rel = file.relative_to(local).as_posix()
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                self.write_bytes(f"{str(key).strip('/')}/{rel}", fh.read())
            count += 1
        return count

    def download(self, key: Key, local: Path) -> int:
        """Copy a file or directory at `key` to `local` (a directory); returns the number of files."""
        path = self.path(key)
        if not self._call("read", key, self.fs.exists, path):
            raise ArtifactError(f"nothing at {self.uri(key)}",
                                hint="the run that writes it has not finished, or wrote nothing there")
        local.mkdir(parents=True, exist_ok=True)
        if self._call("read", key, self.fs.isfile, path):
            (local / PurePosixPath(path).name).write_bytes(self.read_bytes(key))
            return 1
        rels = self.list(key)
        for rel in rels:
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(f"{str(key).strip('/')}/{rel}"))
        return len(rels)

    def remove(self, key: Key) -> bool:
        path = self.path(key)
        if not self._call("remove", key, self.fs.exists, path):
            return False
        self._call("remove", key, self.fs.rm, path, recursive=True)
        return True

    # -- tarballs (dir sources) -----------------------------------------------------------
    def upload_tarball(self, local: Path, key: Key) -> bool:
        """Pack `local` into a .tar.gz at `key`; False (nothing sent) when it is already there."""
        if self.exists(key):
            return False
        self.write_bytes(key, pack(local))
        return True

    def extract_tarball(self, key: Key, dest: Path) -> int:
        return unpack(self.read_bytes(key), dest, where=self.uri(key))

    def _call(self, verb: str, key: Key, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArtifactError:
            raise
        except Exception as err:  # noqa: BLE001 - the boundary to fsspec and its backends (botocore's own errors)
            raise ArtifactError(f"could not {verb} {self.uri(key)}: {type(err).__name__}: {err}",
                                hint=f"check that {self.url} exists and the credentials allow it") from err


def pack(local: Path) -> bytes:
    """A reproducible .tar.gz of `local`: sorted, no owners or times (not even gzip's), modes kept."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(Path(local).rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue  # sources are plain files; links and devices stay behind
            info = tar.gettarinfo(str(path), arcname=path.relative_to(local).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return gzip.compress(buf.getvalue(), mtime=0)


def unpack(data: bytes, dest: Path, *, where: str = "tarball") -> int:
    """Extract plain files and directories only, never outside `dest`; returns the file count."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
                raise ArtifactError(f"{where}: refusing {member.name!r} (links, devices and paths outside "
                                    f"the context are not unpacked)")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            target.chmod(member.mode & 0o755 | 0o644)
            count += 1
    return count


def regular_files(root: Path) -> list[Path]:
    """Regular files under `root`, sorted; links (to files or directories) are neither listed nor entered."""
    out: list[Path] = []
    for dirpath, _, filenames in os.walk(root, followlinks=False):
        out += [p for p in (Path(dirpath) / f for f in filenames) if stat.S_ISREG(p.lstat().st_mode)]
    return sorted(out)
