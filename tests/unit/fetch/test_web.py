"""http(s):// sources against a local file server: identity, archives (safe unpacking), errors."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from substratus.fetch.archive import ArchiveLimits
from substratus.fetch.cache import Cache, FetchLimits
from substratus.fetch.errors import ArchiveError, AuthError, SourceNotFoundError
from substratus.fetch.sources import open_source, resolve
from substratus.fetch.web import WebSource
from tests.unit.fetch.servers import FileServer

DATA = os.urandom(200_000)


def tarball(members: dict[str, bytes], *, gz: bool = True, extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_single_file_is_fetched_once_and_then_answered_from_its_etag(cache: Cache, web: FileServer) -> None:
    url = web.put("/data/train.jsonl", DATA)
    first = cache.fetch(url, {})
    second = cache.fetch(url, {})
    assert (first.outcome, second.outcome) == ("downloaded", "cached")
    assert first.entry.file is not None and first.entry.file.name == "train.jsonl"
    assert first.entry.file.read_bytes() == DATA
    assert web.log.bytes_sent("/data/train.jsonl") == len(DATA)


def test_resolve_uses_etag_or_last_modified_or_calls_the_server_unstable(web: FileServer) -> None:
    assert resolve(web.put("/a", b"a"), {}).files[0].version.startswith('etag:"')
    lm = resolve(web.put("/b", b"b", etag=""), {})
    assert lm.files[0].version.startswith("last-modified:") and lm.stable
    bare = resolve(web.put("/c", b"c", etag="", last_modified=None), {})
    assert bare.files[0].version == "unstable" and not bare.stable


def test_a_server_without_validators_is_downloaded_each_time_but_stored_once(cache: Cache, web: FileServer) -> None:
    url = web.put("/plain.bin", DATA, etag="", last_modified=None, length=False)
    first = cache.fetch(url, {})
    second = cache.fetch(url, {})
    assert (first.outcome, second.outcome) == ("downloaded", "shared")
    assert first.entry.key == second.entry.key and len(cache.ls()) == 1
    assert first.source_digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_head_refused_falls_back_to_a_one_byte_get(cache: Cache, tmp_path: Path) -> None:
    server = FileServer(head=False).start()
    try:
        url = server.put("/signed.bin", DATA)
        r = resolve(url, {})
        assert r.files[0].size == len(DATA) and r.stable
        assert cache.fetch(url, {}).entry.size == len(DATA)
    finally:
        server.stop()


def test_a_tar_gz_is_unpacked_into_a_tree_and_its_digest_is_the_archives(cache: Cache, web: FileServer) -> None:
    archive = tarball({"model/config.json": b"{}", "model/weights.bin": DATA})
    url = web.put("/releases/tiny.tar.gz", archive)
    result = cache.fetch(url, {}, digest="sha256:" + hashlib.sha256(archive).hexdigest())
    entry = result.entry
    assert entry.kind == "tree"
    assert sorted(f.path for f in entry.files) == ["model/config.json", "model/weights.bin"]
    assert (entry.path / "model" / "weights.bin").read_bytes() == DATA
    assert cache.fetch(url, {}, digest=result.source_digest).outcome == "cached"


def test_no_unpack_keeps_the_archive_as_one_file(cache: Cache, web: FileServer) -> None:
    archive = tarball({"a.txt": b"a"})
    entry = cache.fetch(web.put("/x.tgz", archive), {}, unpack=False).entry
    assert entry.kind == "file" and entry.file is not None and entry.file.read_bytes() == archive


def test_a_zip_is_unpacked(cache: Cache, web: FileServer) -> None:
    entry = cache.fetch(web.put("/d.zip", zipped({"train/a.txt": b"a", "b.txt": b"b"})), {}).entry
    assert sorted(f.path for f in entry.files) == ["b.txt", "train/a.txt"]


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil", "a/../../escape.txt"])
def test_a_tar_member_escaping_the_entry_is_refused(cache: Cache, web: FileServer, tmp_path: Path,
                                                   name: str) -> None:
    url = web.put("/evil.tar.gz", tarball({"ok.txt": b"ok", name: b"owned"}))
    with pytest.raises(ArchiveError, match="refusing archive member"):
        cache.fetch(url, {})
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "cache" / "escape.txt").exists()
    assert cache.ls() == []


def test_a_zip_member_escaping_the_entry_is_refused(cache: Cache, web: FileServer) -> None:
    with pytest.raises(ArchiveError, match="refusing"):
        cache.fetch(web.put("/evil.zip", zipped({"../../x": b"x"})), {})


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_links_and_devices_in_a_tar_are_refused(cache: Cache, web: FileServer, kind: bytes) -> None:
    link = tarfile.TarInfo("link")
    link.type = kind
    link.linkname = "/etc/passwd"
    with pytest.raises(ArchiveError, match="link|device"):
        cache.fetch(web.put("/links.tar", tarball({"a": b"a"}, gz=False, extra=[link])), {})


def test_an_archive_unpacking_beyond_the_limit_is_refused(tmp_path: Path, web: FileServer) -> None:
    cache = Cache(tmp_path / "c", limits=FetchLimits(archive=ArchiveLimits(max_bytes=1_000_000)))
    bomb = zipped({"zeros.bin": bytes(5_000_000)})  # about 5 kB compressed
    with pytest.raises(ArchiveError, match="exceeds 1000000 bytes"):
        cache.fetch(web.put("/bomb.zip", bomb), {})


def test_a_file_that_is_not_the_archive_its_name_says_is_an_archive_error(cache: Cache, web: FileServer) -> None:
    with pytest.raises(ArchiveError, match="not a readable"):
        cache.fetch(web.put("/broken.tar.gz", b"not gzip at all"), {})


def test_401_names_authentication_and_the_secret_command(cache: Cache) -> None:
    server = FileServer(token="s3cret").start()
    try:
        url = server.put("/private.bin", DATA)
        with pytest.raises(AuthError) as info:
            cache.fetch(url, {})
        assert "authentication required" in str(info.value) and "sub secret create" in str(info.value)
        assert cache.fetch(url, {"HTTP_BEARER_TOKEN": "s3cret"}).entry.size == len(DATA)
    finally:
        server.stop()


def test_404_is_not_found(cache: Cache, web: FileServer) -> None:
    with pytest.raises(SourceNotFoundError):
        cache.fetch(f"{web.url}/missing.bin", {})


def test_a_file_changed_while_resuming_is_not_completed_with_new_bytes(cache: Cache, web: FileServer) -> None:
    """The file changes after resolving, with part of the old version on disk: If-Range makes the server
    send the whole new file, which is refused; the fetch resolves again and stores the new version."""
    url = web.put("/w.bin", DATA)
    source = open_source(url, {})
    stale = source.resolve()
    partial = cache.root / "partial" / stale.identity / "tree" / "w.bin"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:50_000])  # an interrupted download of the old version
    web.put("/w.bin", DATA[::-1])
    answers = iter([stale])
    source.resolve = lambda: next(answers, None) or WebSource.resolve(source)  # type: ignore[method-assign]
    entry = cache.fetch(url, {}, source=source).entry
    assert entry.file is not None and entry.file.read_bytes() == DATA[::-1]
    [resumed, fresh] = web.log.gets("/w.bin")
    assert resumed.range == "bytes=50000-" and resumed.status == 200  # If-Range did not match: whole file
    assert fresh.range == "" and fresh.status == 200


def test_a_dropped_connection_is_resumed_in_the_same_fetch(tmp_path: Path, web: FileServer) -> None:
    pauses: list[float] = []
    cache = Cache(tmp_path / "c", sleep=pauses.append)
    url = web.put("/flaky.bin", DATA, cut_after=70_000)
    result = cache.fetch(url, {})
    assert result.entry.file is not None and result.entry.file.read_bytes() == DATA
    first, second = web.log.gets("/flaky.bin")
    assert first.sent == 70_000 and second.range == "bytes=70000-" and second.status == 206
    assert pauses == [1.0]  # one backoff, on the injected sleep
    assert (result.fetched_bytes, result.resumed_bytes) == (len(DATA), 0)  # each byte counted once


def test_a_server_ignoring_range_makes_the_file_start_over(cache: Cache, web: FileServer) -> None:
    url = web.put("/norange.bin", DATA, ranges=False)
    r = resolve(url, {})
    partial = cache.root / "partial" / r.identity / "tree" / "norange.bin"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:1000])
    result = cache.fetch(url, {})
    assert result.entry.file is not None and result.entry.file.read_bytes() == DATA
    assert (result.fetched_bytes, result.resumed_bytes) == (len(DATA), 0)
