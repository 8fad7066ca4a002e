"""The cache itself: file:// sources, sharing by content, references, ls, prune, verify, progress."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from substratus.fetch.cache import Cache
from substratus.fetch.digests import ManifestFile, manifest_digest
from substratus.fetch.errors import DigestMismatchError, FetchError, SourceNotFoundError
from substratus.fetch.progress import FetchProgress
from substratus.resources.progress import parse_line
from tests.unit.fetch.servers import FileServer


class Clock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 1_000_000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def model_dir(root: Path, weights: bytes = b"w" * 1000) -> Path:
    (root / "tok").mkdir(parents=True)
    (root / "config.json").write_bytes(b"{}")
    (root / "tok" / "vocab.txt").write_bytes(b"a\nb\n")
    (root / "model.bin").write_bytes(weights)
    return root


def test_a_directory_becomes_a_read_only_tree_keyed_by_its_manifest(cache: Cache, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    result = cache.fetch(f"file://{src}", {})
    entry = result.entry
    assert entry.kind == "tree" and entry.path == cache.root / "entries" / entry.key
    assert sorted(f.path for f in entry.files) == ["config.json", "model.bin", "tok/vocab.txt"]
    for path in entry.path.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o555 if path.is_dir() else 0o444)
    assert result.source_digest == entry.digest


def test_the_documented_shell_pipeline_computes_a_trees_digest(cache: Cache, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    pipeline = r"find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum"
    out = subprocess.run(["bash", "-c", pipeline], cwd=src, capture_output=True, text=True, check=True).stdout
    entry = cache.fetch(f"file://{src}", {}).entry
    assert entry.digest == "sha256:" + out.split()[0]
    assert cache.fetch(f"file://{src}", {}, digest=entry.digest).outcome == "cached"


def test_a_tree_pinned_by_its_digest_needs_no_source(cache: Cache, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    digest = cache.fetch(f"file://{src}", {}).entry.digest
    gone = cache.fetch(f"file://{tmp_path}/moved-away", {}, digest=digest)  # the source is not even read
    assert gone.outcome == "cached" and gone.resolved is None


def test_a_file_digest_must_match(cache: Cache, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b"{}\n")
    wrong = "sha256:" + "1" * 64
    with pytest.raises(DigestMismatchError) as info:
        cache.fetch(f"file://{tmp_path}/d.jsonl", {}, digest=wrong)
    assert wrong in str(info.value) and "sha256:" + hashlib.sha256(b"{}\n").hexdigest() in str(info.value)
    with pytest.raises(FetchError, match="is not sha256:<64 hex digits>"):
        cache.fetch(f"file://{tmp_path}/d.jsonl", {}, digest="md5:abc")


def test_the_same_bytes_from_file_and_from_http_share_one_entry(cache: Cache, tmp_path: Path,
                                                                web: FileServer) -> None:
    data = os.urandom(50_000)
    (tmp_path / "w.bin").write_bytes(data)
    a = cache.fetch(f"file://{tmp_path}/w.bin", {})
    b = cache.fetch(web.put("/x/w.bin", data), {})
    assert (a.outcome, b.outcome) == ("downloaded", "shared") and a.entry.key == b.entry.key
    same_file_elsewhere = tmp_path / "copy"
    same_file_elsewhere.mkdir()
    (same_file_elsewhere / "w.bin").write_bytes(data)
    assert cache.fetch(f"file://{same_file_elsewhere}/w.bin", {}).outcome == "cached"  # known before copying


def test_a_missing_path_is_not_found(cache: Cache, tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        cache.fetch(f"file://{tmp_path}/nope", {})


def test_a_link_to_a_directory_is_refused_links_to_files_followed(cache: Cache, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    (tmp_path / "blob").write_bytes(b"blob")
    (src / "linked.bin").symlink_to(tmp_path / "blob")
    assert (cache.fetch(f"file://{src}", {}).entry.path / "linked.bin").read_bytes() == b"blob"
    (src / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(FetchError, match="link to a directory"):
        cache.fetch(f"file://{src}", {})


def test_references_move_with_the_referrer_and_can_be_released(cache: Cache, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    a = cache.fetch(f"file://{tmp_path}/a", {}, referrer="Model/default/m").entry
    b = cache.fetch(f"file://{tmp_path}/b", {}, referrer="Model/default/m").entry  # the model now uses b
    cache.fetch(f"file://{tmp_path}/b", {}, referrer="Dataset/default/d")
    assert cache.lookup(a.key).referrers == ()  # type: ignore[union-attr]
    assert cache.lookup(b.key).referrers == ("Dataset/default/d", "Model/default/m")  # type: ignore[union-attr]
    assert cache.release("Model/default/m") == 1
    assert cache.lookup(b.key).referrers == ("Dataset/default/d",)  # type: ignore[union-attr]


def test_prune_removes_unreferenced_entries_only(cache: Cache, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    a = cache.fetch(f"file://{tmp_path}/a", {}, referrer="Model/default/a").entry
    cache.fetch(f"file://{tmp_path}/b", {})
    cache.fetch(f"file://{tmp_path}/c", {})
    result = cache.prune()
    assert sorted(e.files[0].path for e in result.removed) == ["b", "c"]
    assert [e.key for e in cache.ls()] == [a.key] and a.path.exists()
    assert result.freed_bytes == 200 and result.kept_bytes == 100
    assert cache.fetch(f"file://{tmp_path}/b", {}).outcome == "downloaded"  # its alias went with it


def test_prune_with_a_size_limit_removes_least_recently_used_first(tmp_path: Path) -> None:
    clock = Clock()
    cache = Cache(tmp_path / "cache", clock=clock)
    for i, name in enumerate(("old", "mid", "new", "pinned")):
        (tmp_path / name).write_bytes(name[0].encode() * 1000)
        clock.now += 60
        cache.fetch(f"file://{tmp_path}/{name}", {}, referrer="Model/default/p" if name == "pinned" else None)
    clock.now += 60
    cache.fetch(f"file://{tmp_path}/old", {})  # used again: now the most recent
    result = cache.prune(max_bytes=2500)
    assert [e.files[0].path for e in result.removed] == ["mid", "new"]
    assert sorted(e.files[0].path for e in cache.ls()) == ["old", "pinned"]
    assert cache.prune(max_bytes=0).removed[0].files[0].path == "old"
    assert [e.files[0].path for e in cache.ls()] == ["pinned"]  # referenced: never removed


def test_prune_forgets_referrers_that_no_longer_exist_and_keeps_what_runs(cache: Cache, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    cache.fetch(f"file://{tmp_path}/a", {}, referrer="Model/default/deleted")
    live = cache.fetch(f"file://{tmp_path}/b", {}, referrer="Model/default/live").entry
    running = cache.fetch(f"file://{tmp_path}/c", {}).entry
    result = cache.prune(referenced={"Model/default/live"}, keep={running.key})
    assert [e.files[0].path for e in result.removed] == ["a"]
    assert {e.key for e in cache.ls()} == {live.key, running.key}


def test_prune_drops_interrupted_downloads_nobody_is_resuming(cache: Cache) -> None:
    stale = cache.root / "partial" / ("ab" * 32) / "tree"
    stale.mkdir(parents=True)
    (stale / "half.bin").write_bytes(b"x" * 10)
    assert cache.prune().partial_freed_bytes == 10
    assert list((cache.root / "partial").iterdir()) == []


def test_verify_finds_a_changed_file(cache: Cache, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    entry = cache.fetch(f"file://{src}", {}).entry
    assert cache.verify(entry.key) == []
    target = entry.path / "model.bin"
    target.chmod(0o644)
    target.write_bytes(b"tampered")
    [(path, expected, actual)] = cache.verify(entry.digest)
    assert path == "model.bin" and expected != actual and actual == "sha256:" + hashlib.sha256(b"tampered").hexdigest()


def test_progress_reports_bytes_total_rate_and_eta(tmp_path: Path, web: FileServer) -> None:
    clock = Clock(step=0.1)  # each look at the clock is a tenth of a second later
    seen: list[FetchProgress] = []
    tick = seen.append

    data = os.urandom(5 << 20)
    cache = Cache(tmp_path / "c", monotonic=clock)
    cache.fetch(web.put("/big.bin", data), {}, progress=tick)
    phases = [p.phase for p in seen]
    assert phases[0] == "resolving" and phases[-1] == "done" and "verifying" in phases
    mid = [p for p in seen if p.phase == "downloading" and 0 < p.done_bytes < len(data)]
    assert mid, phases
    assert all(p.total_bytes == len(data) and p.rate_bps > 0 and p.eta_s is not None for p in mid)
    assert seen[-1].done_bytes == len(data) and seen[-1].files_done == 1 and seen[-1].percent == 100.0
    assert "MiB" in mid[0].line() and "eta" in mid[0].line()
    status = mid[0].to_status(now=5.0)
    assert (status.phase, status.step, status.total_steps, status.updated_at) == ("fetch", mid[0].done_bytes,
                                                                                 len(data), 5.0)
    point = parse_line(mid[0].jsonl(now=5.0))  # what the control plane reads from progress.jsonl
    assert point is not None and (point.step, point.total_steps, point.time) == (mid[0].done_bytes, len(data), 5.0)


def test_the_manifest_is_sha256sums_format_sorted_by_bytes() -> None:
    files = [ManifestFile("b", 1, "2" * 64), ManifestFile("B", 1, "1" * 64), ManifestFile("a/x", 1, "3" * 64)]
    text = "".join(f"{h}  {p}\n" for p, h in [("B", "1" * 64), ("a/x", "3" * 64), ("b", "2" * 64)])
    assert manifest_digest(files) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
