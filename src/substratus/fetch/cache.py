"""The shared, verified cache of fetched sources: `Cache(root).fetch(uri, credentials)`.

Called by the control plane (root `$SUBSTRATUS_HOME/cache`; Model weights are
mounted read-only where the contract keeps saved models, `contract.SAVED_DIR`, a
Dataset's file is copied to /data/<filename>), by `python -m substratus.fetch` in a Kubernetes init
container or Job (root on a volume), and by `sub cache ls|prune`.

One fetch:
  1. resolve the URI (metadata only: ETags, a hub commit, sizes; file:// is hashed);
  2. take the lock of that listing's identity: a second fetch of the same
     listing, in another thread or process, waits here and then finds the entry;
  3. answer from the cache when the listing was fetched before (its alias), or
     when its content digest is known up front (file://, hub LFS files, S3
     SHA-256 checksums) and an entry of those bytes exists, from any URI;
  4. otherwise download into partial/<identity>/ (resuming what is there),
     verify every file, unpack an archive, check the user's digest, and move
     the tree into entries/<key> in one rename, key = its manifest digest.
A source that changes while it is read is resolved again (twice at most).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Literal, Optional

from substratus.fetch.archive import ArchiveLimits, unpack
from substratus.fetch.digests import ManifestFile, check_user_digest, manifest_digest
from substratus.fetch.download import download_all
from substratus.fetch.errors import CacheError, DigestMismatchError, FetchError, SourceChangedError
from substratus.fetch.listing import Resolved, Source
from substratus.fetch.progress import FetchProgress, Meter, ProgressCallback
from substratus.fetch.sources import open_source, resolve_with
from substratus.fetch.store import Entry, PruneResult, Store, referrer_file, remove_tree

Outcome = Literal["cached", "shared", "downloaded"]
RESOLVE_ATTEMPTS = 3


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: Optional[int] = None             # the largest source fetched (None: only the free disk bounds it)
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    workers: int = 4                            # files downloaded at once


@dataclass(frozen=True)
class FetchResult:
    entry: Entry
    outcome: Outcome                  # cached: known listing; shared: same bytes stored from elsewhere; downloaded
    fetched_bytes: int                # read from the source by this call
    resumed_bytes: int                # kept on disk from an interrupted attempt
    resolved: Optional[Resolved]      # None when the digest alone found the entry
    source_digest: str                # what `digest` pins for this source: a file's or archive's sha256, or the tree's


class Cache:
    def __init__(self, root: Path, *, limits: FetchLimits = FetchLimits(), clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = Path(root)
        self.limits = limits
        self.store = Store(self.root, clock=clock)
        self._monotonic = monotonic
        self._sleep = sleep

    # -- fetching -----------------------------------------------------------------------------
    def fetch(self, uri: str, credentials: Optional[Mapping[str, str]] = None, *, digest: Optional[str] = None,
              referrer: Optional[str] = None, progress: Optional[ProgressCallback] = None,
              unpack: bool = True, source: Optional[Source] = None) -> FetchResult:
        """The entry holding `uri`'s bytes, fetched and verified if needed; `referrer` (kind/namespace/name)
        is recorded as using it (and no other entry). `digest` pins the content (docs/uris.md)."""
        want = self._user_digest(uri, digest)
        if referrer is not None:
            _check_referrer(uri, referrer)
        if want is not None:
            pinned = self._pinned(want, referrer)
            if pinned is not None:
                return pinned
        source = source or open_source(uri, credentials)
        for attempt in range(RESOLVE_ATTEMPTS):
            _say(progress, "resolving", uri)
            resolved = resolve_with(source, unpack=unpack)
            try:
                return self._fetch(source, resolved, want, referrer, progress)
            except SourceChangedError:
                if attempt == RESOLVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _user_digest(self, uri: str, digest: Optional[str]) -> Optional[str]:
        if not digest:
            return None
        try:
            return check_user_digest(digest)
        except ValueError as err:
            raise FetchError(f"{uri}: {err}", uri=uri, hint="see docs/uris.md: Verification") from err

    def _pinned(self, want: str, referrer: Optional[str]) -> Optional[FetchResult]:
        """A tree pinned by its manifest digest needs no source at all when its entry is here."""
        with self.store.shared():
            entry = self.store.entry(want.partition(":")[2])
            if entry is None or entry.kind != "tree":
                return None
            return FetchResult(self._use(entry.key, referrer), "cached", 0, 0, None, want)

    def _fetch(self, source: Source, resolved: Resolved, want: Optional[str], referrer: Optional[str],
               progress: Optional[ProgressCallback]) -> FetchResult:
        identity = resolved.identity
        meter = Meter(resolved.uri, resolved.total_size, len(resolved.files), progress, clock=self._monotonic)
        with self.store.identity_lock(identity, on_wait=lambda: meter.set_phase("waiting")):
            hit = self._cached(resolved, identity, want, referrer)
            if hit is not None:
                meter.done = meter.total or 0
                meter.set_phase("done")
                return hit
            self._check_space(resolved)
            meter.set_phase("downloading")
            result = self._download(source, resolved, identity, want, referrer, meter)
        meter.set_phase("done")
        return result

    def _cached(self, resolved: Resolved, identity: str, want: Optional[str],
                referrer: Optional[str]) -> Optional[FetchResult]:
        with self.store.shared():
            alias = self.store.alias_doc(identity) if resolved.stable else None
            if alias is not None and self.store.entry(alias["key"]) is not None:
                key, pins = str(alias["key"]), str(alias["digest"])
            else:
                known = _known_content(resolved)
                if known is None or self.store.entry(known[0]) is None:
                    return None
                key, pins = known
                if resolved.stable:
                    self.store.set_alias(identity, key, resolved.uri, pins)
            _check_pin(resolved.uri, want, pins)
            return FetchResult(self._use(key, referrer), "cached", 0, 0, resolved, pins)

    def _download(self, source: Source, resolved: Resolved, identity: str, want: Optional[str],
                  referrer: Optional[str], meter: Meter) -> FetchResult:
        partial = self.store.partial_path(identity)
        landing = partial / ("archive" if resolved.archive else "tree")
        files = download_all(source, resolved.uri, resolved.files, landing, meter, workers=self.limits.workers,
                             sleep=self._sleep)
        meter.set_phase("verifying")
        pins = f"sha256:{files[0].sha256}" if resolved.kind == "file" else manifest_digest(files)
        _check_pin(resolved.uri, want, pins)
        tree, kind = landing, resolved.kind
        if resolved.archive:
            meter.set_phase("unpacking")
            tree, kind = partial / "unpacked", "tree"
            remove_tree(tree)
            files = unpack(landing / files[0].path, resolved.archive, tree, uri=resolved.uri,
                           limits=self.limits.archive)
            if not files:
                raise FetchError(f"{resolved.uri}: the archive holds no files", uri=resolved.uri)
        with self.store.shared():
            key, shared = self.store.commit(tree, files, kind, resolved.uri)
            if resolved.stable:
                self.store.set_alias(identity, key, resolved.uri, pins)
            entry = self._use(key, referrer)
        remove_tree(partial)
        outcome: Outcome = "shared" if shared else "downloaded"
        return FetchResult(entry, outcome, meter.fetched, meter.done - meter.fetched, resolved, pins)

    def _check_space(self, resolved: Resolved) -> None:
        total = resolved.total_size
        if total is None:
            return
        if self.limits.max_bytes is not None and total > self.limits.max_bytes:
            raise FetchError(f"{resolved.uri}: {total} bytes is more than the limit of {self.limits.max_bytes}",
                             uri=resolved.uri, hint="raise the cache's fetch limit, or name a smaller source")
        need = total * (2 if resolved.archive else 1)
        free = shutil.disk_usage(self.root).free
        if need > free:
            raise CacheError(f"{resolved.uri}: needs about {need} bytes in {self.root}, {free} are free",
                             uri=resolved.uri, hint="free space with `sub cache prune`, or give the cache more room")

    def _use(self, key: str, referrer: Optional[str]) -> Entry:
        self.store.touch(key)
        if referrer:
            self.store.refer(key, referrer)
        entry = self.store.entry(key)
        assert entry is not None
        return entry

    # -- what is there ------------------------------------------------------------------------
    def lookup(self, key: str) -> Optional[Entry]:
        """The entry `key` (hex, or `sha256:<hex>`), or None."""
        return self.store.entry(key.removeprefix("sha256:"))

    def ls(self) -> list[Entry]:
        """Every complete entry, most recently used first."""
        return sorted(self.store.entries(), key=lambda e: e.last_used, reverse=True)

    def refer(self, key: str, referrer: str) -> None:
        with self.store.shared():
            if self.store.entry(key) is None:
                raise CacheError(f"no entry {key} in {self.root}", hint="fetch the source first")
            self.store.refer(key, referrer)

    def release(self, referrer: str) -> int:
        """`referrer` (an object being deleted) uses no entry any more; how many references were dropped."""
        with self.store.shared():
            return self.store.release(referrer)

    def prune(self, max_bytes: Optional[int] = None, referenced: Optional[AbstractSet[str]] = None,
              keep: AbstractSet[str] = frozenset()) -> PruneResult:
        """Remove unreferenced entries: all of them, or with `max_bytes` the least recently used until the
        cache holds at most that much. `referenced`: the referrers that still exist (others are forgotten
        first); `keep`: keys never removed (mounted by something running). Also drops interrupted
        downloads nobody is resuming."""
        with self.store.exclusive():
            return self.store.prune(max_bytes, referenced, keep)

    def verify(self, key: str) -> list[tuple[str, str, str]]:
        """(path, expected, actual) for each file of the entry whose bytes changed since it was stored."""
        return self.store.verify(key.removeprefix("sha256:"))


def _known_content(resolved: Resolved) -> Optional[tuple[str, str]]:
    """(entry key, pinned digest) when every file's SHA-256 is known before downloading."""
    if resolved.archive:
        return None
    files = []
    for f in resolved.files:
        sha = next((d for d in f.expect if d.startswith("sha256:")), None)
        if sha is None or f.size is None:
            return None
        files.append(ManifestFile(f.path, f.size, sha.partition(":")[2]))
    tree = manifest_digest(files)
    return tree.partition(":")[2], (f"sha256:{files[0].sha256}" if resolved.kind == "file" else tree)


def _check_referrer(uri: str, referrer: str) -> None:
    try:
        referrer_file(referrer)
    except ValueError as err:
        raise FetchError(f"{uri}: {err}", uri=uri) from err


def _check_pin(uri: str, want: Optional[str], actual: str) -> None:
    if want is not None and want != actual:
        raise DigestMismatchError(uri=uri, path="", expected=want, actual=actual, what="the digest given",
                                  hint="the source holds other bytes than the digest pins: if it changed on "
                                       "purpose, update the digest; if not, do not use it")


def _say(progress: Optional[ProgressCallback], phase: Literal["resolving"], uri: str) -> None:
    if progress is not None:
        progress(FetchProgress(phase, uri, 0, None, 0.0, None, 0, 0))
