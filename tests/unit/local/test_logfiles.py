"""Hole 4 of issue 7: what a container plants in its bind-mounted logs/ never makes
`sub logs` print a host file, hang, or read a huge file whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from substratus.local import logfiles
from substratus.local.controller import Controller
from substratus.local.service import ControlPlane
from substratus.local.store import Record, Store
from substratus.reconcile.layout import Layout
from substratus.runtimes.fake import FakeRuntime

SECRET = "root:SECRET-HOST-FILE:0:0"


@pytest.fixture
def world(tmp_path: Path) -> tuple[ControlPlane, Record, Path, Path]:
    rt = FakeRuntime()
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    cp = ControlPlane(store, rt, layout, Controller(store, rt, layout, workers=0, executor_workers=0))
    run_dir = layout.run_dir("Model", "default", "m", "k" * 16)
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "job.log").write_text("job line\n")
    (run_dir / "logs" / "train.log").write_text("train line\n")
    rec = Record("Model", "default", "m", 1, {}, {})  # its current run is the newest run directory
    host_file = tmp_path / "host-secret"
    host_file.write_text(SECRET + "\n")
    return cp, rec, run_dir / "logs", host_file


def text(cp: ControlPlane, rec: Record) -> str:
    return "\n".join(cp.file_log_lines(rec))


def test_plain_logs_are_shown(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, _, _ = world
    out = text(cp, rec)
    assert "job line" in out and "train line" in out


def test_a_planted_file_symlink_is_not_followed(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, host_file = world
    (logs / "evil.log").symlink_to(host_file)
    assert SECRET not in text(cp, rec)


def test_a_directory_swapped_for_a_link_is_not_followed(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, host_file = world
    (logs / "sub").symlink_to(host_file.parent)
    assert SECRET not in text(cp, rec)
    # even when asked for a path through the link directly, the open refuses it
    root = cp.layout.object_dir("Model", "default", "m")
    assert SECRET not in "\n".join(logfiles.read_tail(root, logs / "sub" / host_file.name))


def test_a_job_log_replaced_by_a_link_is_not_followed(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, host_file = world
    job = logs.parent / "job.log"
    job.unlink()
    job.symlink_to(host_file)
    assert SECRET not in text(cp, rec)


@pytest.mark.timeout(20)
def test_a_fifo_does_not_hang(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, _ = world
    os.mkfifo(logs / "pipe.log")
    assert "train line" in text(cp, rec)
    root = cp.layout.object_dir("Model", "default", "m")
    assert "not shown" in logfiles.read_tail(root, logs / "pipe.log")[0]


def test_a_huge_file_is_read_as_a_bounded_tail(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, _ = world
    with (logs / "big.log").open("w") as fh:
        for i in range(200_000):
            fh.write(f"line {i:07d} " + "x" * 40 + "\n")
    lines = cp.file_log_lines(rec)
    big = lines[lines.index(next(x for x in lines if x.endswith("big.log <=="))) + 1:]
    shown = sum(len(x) + 1 for x in big)
    assert shown < logfiles.MAX_TAIL_BYTES + 10_000
    assert "are not shown" in big[0] and any("line 0199999" in x for x in big)


def test_paths_outside_the_object_are_refused(tmp_path: Path) -> None:
    (tmp_path / "obj").mkdir()
    (tmp_path / "other").write_text(SECRET)
    assert "not shown" in logfiles.read_tail(tmp_path / "obj", tmp_path / "obj" / ".." / "other")[0]


def test_the_number_of_files_listed_is_bounded(world: tuple[ControlPlane, Record, Path, Path]) -> None:
    cp, rec, logs, _ = world
    for i in range(logfiles.MAX_FILES + 50):
        (logs / f"f{i}.log").write_text("x\n")
    assert len(cp.log_files(rec)) == logfiles.MAX_FILES
