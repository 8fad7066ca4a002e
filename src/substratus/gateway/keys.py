"""API keys for the gateway: created once, shown once, stored only as hashes.

`KeyStore(directory)` keeps `keys.json` (mode 0600) in a directory the caller
gives (the control plane's home, a mounted Secret). A key is
`sk-sub-` + 43 random URL-safe characters (256 bits); the file holds its
SHA-256, its name, when it was made and a short prefix to recognise it by.
A fast hash is enough: the keys are random and long, so there is nothing for
a slow hash to protect against a guess.

The gateway calls `verify` on every request. It compares the presented key's
hash against every stored hash with `hmac.compare_digest`, never stopping
early, so the time taken says nothing about how close a guess was. Keys
created or revoked by another process (`sub keys create` while the daemon
runs) take effect on its next request: `verify` re-reads the file when its
size, inode or modification time changed.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from substratus.errors import ConflictError, NotFoundError, ValidationError
from substratus.resources.schema import DNS1123_LABEL

KEY_PREFIX = "sk-sub-"
SHOWN_PREFIX = len(KEY_PREFIX) + 6  # `sk-sub-AbC12x`: enough to tell keys apart in a list
FILE_NAME = "keys.json"
LOCK_NAME = "keys.lock"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class KeyInfo:
    """What `list` shows: never the key, never its hash."""

    name: str
    prefix: str
    created: str  # ISO 8601, UTC


@dataclass(frozen=True)
class CreatedKey:
    """What `create` returns: the only time the key itself is seen."""

    name: str
    key: str
    prefix: str
    created: str


@dataclass(frozen=True)
class _Stored:
    name: str
    digest: bytes
    prefix: str
    created: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _check_name(name: str) -> str:
    if not (0 < len(name) <= 63 and DNS1123_LABEL.match(name)):
        raise ValidationError([("name", f"{name!r} is not a DNS-1123 label (lower-case letters, digits "
                                        "and '-', at most 63)")], hint="e.g. `laptop` or `ci-runner`")
    return name


class KeyStore:
    """create NAME -> key (shown once); list -> names; revoke NAME; verify KEY -> name or None."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self._stamp: Optional[tuple[int, int, int]] = None
        self._keys: tuple[_Stored, ...] = ()

    # -- what people do -------------------------------------------------
    def create(self, name: str) -> CreatedKey:
        _check_name(name)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
        with self._locked():
            keys = self._read()
            if any(k.name == name for k in keys):
                raise ConflictError(f"an API key named {name!r} exists",
                                    hint=f"revoke it first, or choose another name (`sub keys revoke {name}`)")
            self._write(keys + (_Stored(name, _digest(key), key[:SHOWN_PREFIX], created),))
        return CreatedKey(name, key, key[:SHOWN_PREFIX], created)

    def list(self) -> builtins.list[KeyInfo]:
        self._refresh()
        return [KeyInfo(k.name, k.prefix, k.created) for k in self._keys]

    def revoke(self, name: str) -> None:
        with self._locked():
            keys = self._read()
            if not any(k.name == name for k in keys):
                known = ", ".join(k.name for k in keys) or "none"
                raise NotFoundError(f"no API key named {name!r} (known: {known})", hint="`sub keys list`")
            self._write(tuple(k for k in keys if k.name != name))

    # -- what the gateway does on every request ------------------------
    def verify(self, key: str) -> Optional[str]:
        """The name of the key, or None; constant time over the stored keys."""
        self._refresh()
        presented = _digest(key)
        found: Optional[str] = None
        for stored in self._keys:
            if hmac.compare_digest(stored.digest, presented):
                found = stored.name  # keep looping: the time must not depend on where it matched
        return found

    # -- the file -------------------------------------------------------
    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, ()
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._stamp:
            self._keys = self._read()
            self._stamp = stamp

    def _read(self) -> tuple[_Stored, ...]:
        try:
            data: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ()
        except (OSError, ValueError) as exc:
            raise ValidationError([("keys", f"{self.path} is unreadable: {exc}")],
                                  hint="restore it, or move it away and create new keys") from exc
        return tuple(_Stored(k["name"], bytes.fromhex(k["sha256"]), k["prefix"], k["created"])
                     for k in data.get("keys", []))

    def _write(self, keys: tuple[_Stored, ...]) -> None:
        body = {"version": FORMAT_VERSION,
                "keys": [{"name": k.name, "sha256": k.digest.hex(), "prefix": k.prefix, "created": k.created}
                         for k in keys]}
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode otherwise
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._keys, self._stamp = keys, None  # this process sees the change at once

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (the daemon and `sub keys`)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
