"""Issue 25 item 2: the notebook side of `sub notebook DIR` is untrusted. What it lists or sends
never makes the host side touch a file outside DIR (sync.paths, sync.container, sync.sides)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Optional

import pytest

from substratus.runtimes.base import ExecResult, RunSpec
from substratus.runtimes.fake import FakeRuntime
from substratus.sync.container import ContainerDir, parse_listing, untar
from substratus.sync.ignore import Excludes
from substratus.sync.paths import problem
from substratus.sync.session import Syncer
from substratus.sync.sides import FileData, LocalDir


@pytest.mark.parametrize("path", ["/etc/cron.d/x", "/tmp/x", "a//b", "./a", "a/./b", "../x", "a/../../x", "a/..",
                                  "a\nb", "a\0b", "a\rb", "", ".git/hooks/post-checkout", "src/.git/config",
                                  "x" * 256, "/".join(["d"] * 2100)])
def test_paths_that_never_sync(path: str) -> None:
    assert problem(path) is not None


@pytest.mark.parametrize("path", ["a", "src/train.py", "a b/c d.txt", ".gitignore", "..x", "x..", "dir/.hidden",
                                  "ünï/cödé.py"])
def test_ordinary_paths_sync(path: str) -> None:
    assert problem(path) is None


def test_the_listing_is_matched_name_by_name() -> None:
    """A name with a newline cannot pass off a second line as its own; a vanished name has no line;
    without find's end marker the listing is incomplete."""
    crafted = b"./a\n1 6 .//etc/passwd\0./b\0.\0\0" b"5 1 ./a\n1 6 .//etc/passwd\n7 2 ./b\n1 4096 .\n\0"
    found, complete = parse_listing(crafted)
    assert found == [("a\n1 6 .//etc/passwd", 5.0, 1), ("b", 7.0, 2)] and complete
    assert parse_listing(b"./gone\0./b\0\0" b"7 2 ./b\n\0") == ([("b", 7.0, 2)], False)


def tar_of(members: dict[str, bytes], *, link: Optional[str] = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
            tar.addfile(info)
    return buf.getvalue()


def test_only_the_regular_files_asked_for_come_out_of_a_tar() -> None:
    data = tar_of({".//etc/cron.d/x": b"pwned", "./a": b"ok", "b": b"unasked", "./big": b"x" * 100}, link="./c")
    assert set(untar(data, {"a", "big", "c", "/etc/cron.d/x"}, max_size=10)) == {"a"}
    assert untar(b"not a tar", {"a"}) == {}


class HostileRuntime(FakeRuntime):
    """A notebook whose find, stat and tar answer what its code wants."""

    def __init__(self, listing: bytes, tarball: bytes) -> None:
        super().__init__()
        self.listing, self.tarball = listing, tarball
        self.asked: list[list[str]] = []

    def exec(self, name: str, argv: list[str], *, stdin: Optional[bytes] = None, workdir: Optional[str] = None,
             timeout: float = 60) -> ExecResult:
        self.asked.append(argv)
        if argv[:2] == ["sh", "-c"] and "find" in argv[2]:
            return ExecResult(0, self.listing, "")
        if argv[:2] == ["tar", "-c"]:
            return ExecResult(0, self.tarball, "")
        return super().exec(name, argv, stdin=stdin, workdir=workdir, timeout=timeout)


def test_a_crafted_listing_and_tar_write_nothing_outside_dir(tmp_path: Path) -> None:
    """The hole: `.//<absolute path>` in the listing, the same member in the tar -> the host wrote
    that absolute path. Now it is refused (and reported), never asked for, and DIR gets the rest."""
    outside = tmp_path / "outside" / "pwned.txt"
    rel = str(outside).lstrip("/")
    listing = f"./ok.txt\0.//{rel}\0.\0\0".encode() + f"1 2 ./ok.txt\n1 6 .//{rel}\n1 4096 .\n\0".encode()
    rt = HostileRuntime(listing, tar_of({"./ok.txt": b"ok", f".//{rel}": b"pwned\n"}))
    rt.run(RunSpec(name="nb", image="img"))
    d = tmp_path / "dir"
    d.mkdir()
    excludes = lambda: Excludes.for_dir(d)  # noqa: E731
    remote = ContainerDir(rt, "nb", "/model", excludes)
    report = Syncer(LocalDir(d, excludes), remote).round()
    assert report.error is None and report.lines == ["↓ ok.txt"]
    assert not outside.exists() and not outside.parent.exists()
    assert remote.refused == {f"/{rel}": "an absolute path"}
    assert all(f".//{rel}" not in " ".join(argv) for argv in rt.asked if argv[0] == "tar")


def test_local_writes_and_deletes_never_follow_a_link_out_of_dir(tmp_path: Path) -> None:
    d, outside = tmp_path / "dir", tmp_path / "outside"
    d.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, d / "link")
    local = LocalDir(d, lambda: Excludes([]))
    data = FileData(b"x", 1_700_000_000.0)
    skipped = local.write({"link/new.txt": data, "../escape.txt": data, ".git/hooks/post-checkout": data,
                           "fine/new.txt": data}, {})
    assert sorted(skipped) == ["../escape.txt", ".git/hooks/post-checkout", "link/new.txt"]
    assert os.listdir(outside) == ["keep.txt"] and not (tmp_path / "escape.txt").exists()
    assert (d / "fine" / "new.txt").read_bytes() == b"x"
    assert local.delete(["link/keep.txt"], {"link/keep.txt": None}) == ["link/keep.txt"]
    assert (outside / "keep.txt").exists()


def test_a_gitignore_cannot_reinclude_version_control_metadata(tmp_path: Path) -> None:
    """The notebook can edit DIR's .gitignore: `!.git/` must not open DIR/.git/hooks to it."""
    d = tmp_path / "dir"
    (d / ".git" / "hooks").mkdir(parents=True)
    (d / ".gitignore").write_text("!.git/\n!.git/**\n")
    (d / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\n")
    local = LocalDir(d, lambda: Excludes.for_dir(d))
    assert ".git/hooks/pre-commit" not in local.scan()
    assert local.write({".git/hooks/post-checkout": FileData(b"#!/bin/sh\nid\n", 1.0)}, {}) == \
        [".git/hooks/post-checkout"]
    assert not (d / ".git" / "hooks" / "post-checkout").exists()
