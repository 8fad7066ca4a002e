"""The cache on disk: verified entries, what refers to them, and housekeeping.

    <root>/entries/<key>/...        complete, verified, read-only (files 0444, dirs 0555);
                                    <key> is the hex SHA-256 of the entry's canonical manifest
    <root>/meta/<key>.json          the manifest (path, size, sha256 of each file), kind, size, created
    <root>/used/<key>               empty; its mtime is when the entry was last fetched or looked up
    <root>/refs/<key>/<referrer>    empty; one per object that uses the entry (kind/namespace/name, quoted)
    <root>/aliases/<identity>.json  a resolved source listing (see listing.Resolved.identity) -> its key
    <root>/partial/<identity>/      downloads in progress or interrupted (resumed by the next fetch)
    <root>/locks/                   flock files: cache.lock (shared by fetches, exclusive for prune),
                                    <identity>.lock (one download of a listing at a time)
    <root>/trash/                   entries being removed (moved here first: removal is atomic)

An entry appears in entries/ only by one rename of a directory whose every file
was verified, so a reader never sees a half-written one. Everything else here
is bookkeeping that can be rebuilt or dropped; it is written with
write-then-rename so a crash leaves the old or the new version, never a torn one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import AbstractSet, Any, Literal, Optional
from urllib.parse import quote, unquote

from substratus.fetch.digests import ManifestFile, manifest_digest
from substratus.fetch.errors import CacheError
from substratus.fetch.locks import flocked, is_locked

MAX_REFERRER = 200


@dataclass(frozen=True)
class Entry:
    key: str                       # hex SHA-256 of the canonical manifest
    path: Path                     # <root>/entries/<key>: mount this read-only
    kind: Literal["file", "tree"]  # one file (path / files[0].path), or a tree
    size: int
    files: tuple[ManifestFile, ...]
    created: float
    last_used: float
    referrers: tuple[str, ...]
    sources: tuple[str, ...]       # URIs it was fetched from (as given)

    @property
    def digest(self) -> str:
        """`sha256:<key>`: a tree's digest as a user gives it (docs/uris.md)."""
        return f"sha256:{self.key}"

    @property
    def file(self) -> Optional[Path]:
        """The one file of a single-file entry (a Dataset copies it to /data/<filename>)."""
        return self.path / self.files[0].path if self.kind == "file" else None


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[Entry, ...]
    freed_bytes: int
    kept_bytes: int
    partial_freed_bytes: int


class Store:
    """The directory layout and its bookkeeping; `cache.Cache` drives fetches through it."""

    def __init__(self, root: Path, *, clock: Callable[[], float]) -> None:
        self.root = Path(root)
        self.clock = clock
        for sub in ("entries", "meta", "used", "refs", "aliases", "partial", "locks", "trash"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CacheError(f"cache {self.root}: cannot create {sub}/: {err.strerror}",
                                 hint="give a cache directory this process can write") from err

    # -- paths and locks ----------------------------------------------------------------------
    def entry_path(self, key: str) -> Path:
        return self.root / "entries" / key

    def partial_path(self, identity: str) -> Path:
        return self.root / "partial" / identity

    def identity_lock(self, identity: str, on_wait: Optional[Callable[[], None]] = None) -> Any:
        return flocked(self.root / "locks" / f"{identity}.lock", on_wait=on_wait)

    def shared(self) -> Any:
        return flocked(self.root / "locks" / "cache.lock", shared=True)

    def exclusive(self) -> Any:
        return flocked(self.root / "locks" / "cache.lock")

    # -- reading ------------------------------------------------------------------------------
    def entry(self, key: str) -> Optional[Entry]:
        """The complete entry `key`, or None."""
        path = self.entry_path(key)
        meta = _read_json(self.root / "meta" / f"{key}.json")
        if meta is None or not path.is_dir():
            return None
        files = tuple(ManifestFile(f["path"], int(f["size"]), f["sha256"]) for f in meta["files"])
        used = self.root / "used" / key
        last_used = used.stat().st_mtime if used.exists() else float(meta["created"])
        return Entry(key=key, path=path, kind=meta["kind"], size=int(meta["size"]), files=files,
                     created=float(meta["created"]), last_used=last_used, referrers=self.referrers(key),
                     sources=tuple(meta.get("sources", [])))

    def entries(self) -> list[Entry]:
        sources = self._sources()
        out = []
        for path in sorted((self.root / "entries").iterdir()):
            found = self.entry(path.name)
            if found is not None:
                extra = tuple(s for s in sorted(sources.get(found.key, ())) if s not in found.sources)
                out.append(replace(found, sources=found.sources + extra))
        return out

    def alias_doc(self, identity: str) -> Optional[dict[str, Any]]:
        """What a listing resolved to before: {key, uri, digest (what a user's digest pins), at}."""
        return _read_json(self.root / "aliases" / f"{identity}.json")

    def referrers(self, key: str) -> tuple[str, ...]:
        folder = self.root / "refs" / key
        return tuple(sorted(unquote(p.name) for p in folder.iterdir())) if folder.is_dir() else ()

    def _sources(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for path in (self.root / "aliases").glob("*.json"):
            doc = _read_json(path)
            if doc:
                found.setdefault(str(doc["key"]), set()).add(str(doc.get("uri", "")))
        return found

    # -- writing ------------------------------------------------------------------------------
    def commit(self, tree: Path, files: list[ManifestFile], kind: Literal["file", "tree"], uri: str) -> tuple[str, bool]:
        """Move a verified tree into entries/ under its manifest's key; (key, whether it was already there)."""
        key = manifest_digest(files).partition(":")[2]
        final = self.entry_path(key)
        if final.is_dir() and self.entry(key) is not None:
            remove_tree(tree)
            return key, True
        _read_only(tree)
        meta = {"key": key, "kind": kind, "size": sum(f.size for f in files), "created": self.clock(),
                "sources": [uri], "files": [f.__dict__ for f in sorted(files, key=lambda f: f.path.encode())]}
        _write_json(self.root / "meta" / f"{key}.json", meta)
        try:
            os.rename(tree, final)
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise CacheError(f"cache {self.root}: cannot move the entry into place: {err.strerror}") from err
            remove_tree(tree)  # another fetch of the same bytes won the race
            return key, True
        final.chmod(0o555)
        return key, False

    def set_alias(self, identity: str, key: str, uri: str, digest: str) -> None:
        _write_json(self.root / "aliases" / f"{identity}.json",
                    {"key": key, "uri": uri, "digest": digest, "at": self.clock()})

    def touch(self, key: str) -> None:
        used = self.root / "used" / key
        used.touch()
        now = self.clock()
        os.utime(used, (now, now))

    def refer(self, key: str, referrer: str) -> None:
        """`referrer` uses `key` and nothing else (its references to other entries are dropped)."""
        name = referrer_file(referrer)
        for folder in (self.root / "refs").iterdir():
            if folder.name != key:
                (folder / name).unlink(missing_ok=True)
        (self.root / "refs" / key).mkdir(exist_ok=True)
        (self.root / "refs" / key / name).touch()

    def release(self, referrer: str) -> int:
        """Drop every reference `referrer` holds; how many there were."""
        name = referrer_file(referrer)
        count = 0
        for folder in (self.root / "refs").iterdir():
            if (folder / name).exists():
                (folder / name).unlink()
                count += 1
        return count

    # -- housekeeping -------------------------------------------------------------------------
    def prune(self, max_bytes: Optional[int], referenced: Optional[AbstractSet[str]],
              keep: AbstractSet[str]) -> PruneResult:
        if referenced is not None:
            self._forget_referrers(referenced)
        entries = self.entries()
        removable = sorted((e for e in entries if not e.referrers and e.key not in keep), key=lambda e: e.last_used)
        total = sum(e.size for e in entries)
        removed = []
        for entry in removable:
            if max_bytes is not None and total <= max_bytes:
                break
            self.remove(entry.key)
            total -= entry.size
            removed.append(entry)
        freed_partial = self._clean()
        return PruneResult(tuple(removed), sum(e.size for e in removed), total, freed_partial)

    def _forget_referrers(self, referenced: AbstractSet[str]) -> None:
        alive = {referrer_file(r) for r in referenced}
        for folder in (self.root / "refs").iterdir():
            for ref in folder.iterdir():
                if ref.name not in alive:
                    ref.unlink()

    def remove(self, key: str) -> None:
        final = self.entry_path(key)
        if final.exists():
            trash = self.root / "trash" / f"{key}.{uuid.uuid4().hex[:8]}"
            final.chmod(0o755)
            os.rename(final, trash)
            remove_tree(trash)
        for path in (self.root / "meta" / f"{key}.json", self.root / "used" / key):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.root / "refs" / key, ignore_errors=True)

    def _clean(self) -> int:
        """Drop bookkeeping of missing entries, and partial downloads nobody is writing; bytes freed."""
        present = {p.name for p in (self.root / "entries").iterdir()}
        for path in (self.root / "aliases").glob("*.json"):
            doc = _read_json(path)
            if not doc or doc.get("key") not in present:
                path.unlink(missing_ok=True)
        for folder, suffix in (("meta", ".json"), ("used", ""), ("refs", "")):
            for path in (self.root / folder).iterdir():
                if path.name.removesuffix(suffix) not in present:
                    remove_tree(path)
        freed = 0
        for partial in (self.root / "partial").iterdir():
            if not is_locked(self.root / "locks" / f"{partial.name}.lock"):
                freed += _du(partial)
                remove_tree(partial)
                (self.root / "locks" / f"{partial.name}.lock").unlink(missing_ok=True)
        for trash in (self.root / "trash").iterdir():
            remove_tree(trash)
        return freed

    def verify(self, key: str) -> list[tuple[str, str, str]]:
        """Hash an entry's files again: (path, expected, actual) for each that differs (bit rot, tampering)."""
        import hashlib

        entry = self.entry(key)
        if entry is None:
            raise CacheError(f"no entry {key} in {self.root}", hint="`sub cache ls` lists the entries")
        bad = []
        for f in entry.files:
            h = hashlib.sha256()
            try:
                with (entry.path / f.path).open("rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                actual = f"sha256:{h.hexdigest()}"
            except OSError as err:
                actual = f"unreadable ({err.strerror})"
            if actual != f"sha256:{f.sha256}":
                bad.append((f.path, f"sha256:{f.sha256}", actual))
        return bad


def referrer_file(referrer: str) -> str:
    if not referrer or len(referrer) > MAX_REFERRER:
        raise ValueError(f"referrer {referrer!r}: give kind/namespace/name (1-{MAX_REFERRER} characters)")
    return quote(referrer, safe="")


def _read_only(tree: Path) -> None:
    """Files 0444, directories 0555 (the root last, after it is moved: renaming needs it writable)."""
    for current, dirs, names in os.walk(tree, topdown=False):
        for name in names:
            (Path(current) / name).chmod(0o444)
        for name in dirs:
            (Path(current) / name).chmod(0o555)


def remove_tree(path: Path) -> None:
    """Remove a tree the cache made read-only."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for current, dirs, _ in os.walk(path):
            os.chmod(current, stat.S_IRWXU)
            for name in dirs:
                os.chmod(Path(current) / name, stat.S_IRWXU)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, path)

