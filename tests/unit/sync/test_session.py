"""The Syncer over real sides: a local directory, and a container directory through the fake runtime's
`exec` (which runs the transport's find/stat/tar/sh on this machine, in a scratch directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from substratus.runtimes.base import RunSpec
from substratus.runtimes.fake import FakeRuntime
from substratus.sync.container import ContainerDir, parse_listing
from substratus.sync.ignore import Excludes
from substratus.sync.session import Syncer
from substratus.sync.sides import FileData, LocalDir, ScanError


class World:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "dir"
        self.dir.mkdir()
        self.rt = FakeRuntime()
        self.rt.run(RunSpec(name="nb", image="img", command=["notebook.sh"]))
        self.box = self.rt.filesystem("nb") / "model"
        self.box.mkdir(parents=True)
        excludes = lambda: Excludes.for_dir(self.dir)  # noqa: E731 - re-read each round, as `sub notebook` does
        self.local = LocalDir(self.dir, excludes)
        self.remote = ContainerDir(self.rt, "nb", "/model", excludes)
        self.syncer = Syncer(self.local, self.remote)

    def round(self) -> list[str]:
        report = self.syncer.round()
        assert report.error is None, report.error
        return report.lines


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.rt.remove("nb")


def write(path: Path, text: str, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_a_first_round_makes_both_sides_the_union(w: World) -> None:
    write(w.dir / "src" / "train.py", "print('dir')\n")
    write(w.box / "notebook.ipynb", '{"cells": []}\n')
    lines = w.round()
    assert sorted(lines) == ["↑ src/train.py", "↓ notebook.ipynb"]
    assert (w.box / "src" / "train.py").read_text() == "print('dir')\n"
    assert (w.dir / "notebook.ipynb").read_text() == '{"cells": []}\n'
    assert w.round() == [], "nothing left to do"


def test_edits_travel_both_ways_and_keep_mtime_and_the_executable_bit(w: World) -> None:
    write(w.dir / "run.sh", "#!/bin/sh\n", mtime=1_700_000_000)
    (w.dir / "run.sh").chmod(0o755)
    w.round()
    copied = w.box / "run.sh"
    assert copied.stat().st_mtime == 1_700_000_000 and copied.stat().st_mode & 0o111
    write(w.box / "run.sh", "#!/bin/sh\necho saved in the notebook\n")
    assert w.round() == ["↓ run.sh"]
    assert (w.dir / "run.sh").read_text().endswith("echo saved in the notebook\n")
    write(w.dir / "run.sh", "#!/bin/sh\necho edited in DIR\n")
    assert w.round() == ["↑ run.sh"]
    assert copied.read_text().endswith("echo edited in DIR\n")


def test_a_delete_on_one_side_deletes_the_synced_file_on_the_other(w: World) -> None:
    write(w.dir / "a.txt", "a")
    write(w.dir / "b.txt", "b")
    w.round()
    (w.box / "a.txt").unlink()
    (w.dir / "b.txt").unlink()
    assert sorted(w.round()) == ["✗ a.txt (deleted in notebook)", "✗ b.txt (deleted in DIR)"]
    assert not (w.dir / "a.txt").exists() and not (w.box / "b.txt").exists()


def test_both_changed_keeps_the_newer_at_the_path_and_the_other_beside_it(w: World) -> None:
    write(w.dir / "model.py", "v1\n", mtime=1_700_000_000)
    w.round()
    write(w.dir / "model.py", "from DIR\n", mtime=1_700_000_100)
    write(w.box / "model.py", "from the notebook, newer\n", mtime=1_700_000_200)
    [line] = w.round()
    assert line.startswith("! model.py: changed in both; kept the newer (notebook's)")
    kept = [p.name for p in w.dir.iterdir() if p.name.startswith("model.conflict-")]
    assert len(kept) == 1 and kept[0].endswith(".py")
    assert (w.dir / "model.py").read_text() == (w.box / "model.py").read_text() == "from the notebook, newer\n"
    assert (w.dir / kept[0]).read_text() == (w.box / kept[0]).read_text() == "from DIR\n"
    assert w.round() == []


def test_excludes_defaults_and_gitignore_apply_on_both_sides(w: World) -> None:
    write(w.dir / ".gitignore", "*.ckpt\nscratch/\n")
    write(w.dir / "weights.ckpt", "big")
    write(w.dir / "scratch" / "tmp.txt", "x")
    write(w.dir / ".git" / "HEAD", "ref")
    write(w.box / "saved" / "model.bin", "weights")
    write(w.box / ".ipynb_checkpoints" / "nb-checkpoint.ipynb", "{}")
    write(w.box / "src" / "__pycache__" / "m.pyc", "x")
    write(w.box / "src" / "out.ckpt", "x")
    write(w.box / "src" / "keep.py", "keep")
    assert sorted(w.round()) == ["↑ .gitignore", "↓ src/keep.py"]
    assert not (w.dir / "saved").exists() and not (w.box / "weights.ckpt").exists()


def test_files_over_the_size_limit_are_left_out_and_named(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.local.max_size = 10
    write(world.dir / "big.bin", "x" * 11)
    write(world.dir / "small.txt", "ok")
    assert world.round() == ["↑ small.txt"]
    assert world.local.too_big == {"big.bin"}


def test_a_failed_scan_skips_the_round_and_deletes_nothing(w: World) -> None:
    write(w.dir / "a.txt", "a")
    w.round()
    w.rt.stop("nb")  # exec now fails, as on a container that stopped
    report = w.syncer.round()
    assert report.error and report.lines == []
    assert (w.dir / "a.txt").exists() and w.syncer.base == {"a.txt": digest_of("a")}


def digest_of(text: str) -> str:
    return FileData(text.encode(), 0).digest


def test_a_write_to_a_file_changed_since_the_scan_is_skipped_not_lost(w: World) -> None:
    write(w.dir / "x.txt", "mine")
    seen = w.local.scan()["x.txt"]
    write(w.dir / "x.txt", "typed meanwhile!")  # a different size: not what the scan saw
    skipped = w.local.write({"x.txt": FileData(b"theirs", 1.0)}, {"x.txt": seen})
    assert skipped == ["x.txt"] and (w.dir / "x.txt").read_text() == "typed meanwhile!"
    write(w.box / "y.txt", "in the box")
    seen_remote = w.remote.scan()["y.txt"]
    write(w.box / "y.txt", "changed in the box")
    assert w.remote.write({"y.txt": FileData(b"pushed", 1.0)}, {"y.txt": seen_remote}) == ["y.txt"]
    assert (w.box / "y.txt").read_text() == "changed in the box"
    assert w.remote.write({"new.txt": FileData(b"n", 1.0)}, {"new.txt": None}) == []
    assert not [p for p in w.box.rglob("*sub-sync*")], "no temporary file is left behind"


def test_a_rewrite_within_the_same_second_at_the_same_size_is_still_seen(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "f.txt", "aaaa", mtime=1_700_000_000)
    side = LocalDir(root, lambda: Excludes([]), clock=lambda: 1_700_000_000.0)
    first = side.scan()["f.txt"].digest
    write(root / "f.txt", "bbbb", mtime=1_700_000_000)  # same size, same mtime: only the content differs
    assert side.scan()["f.txt"].digest != first


def test_listing_lines_that_do_not_parse_are_skipped() -> None:
    out = (b"./a b.txt\0./y\0./gone\0./empty\0.\0\0"
           b"1700000000 3 ./a b.txt\n12 x ./y\n1700000001 0 ./empty\n1 4096 .\n\0")
    assert parse_listing(out) == ([("a b.txt", 1_700_000_000.0, 3)], True), "a line that does not parse ends it"
    out = b"./a b.txt\0./gone\0./empty\0.\0\0" b"1700000000 3 ./a b.txt\n1700000001 0 ./empty\n1 4096 .\n\0"
    assert parse_listing(out) == ([("a b.txt", 1_700_000_000.0, 3), ("empty", 1_700_000_001.0, 0)], True)


def test_scan_error_type_is_raised_for_a_missing_container(w: World) -> None:
    gone = ContainerDir(w.rt, "no-such-container", "/model", lambda: Excludes([]))
    with pytest.raises(ScanError):
        gone.scan()
