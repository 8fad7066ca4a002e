"""Issue 25 items 3 and 4: a job's outputs are judged without trusting them (local.outputs)."""

from __future__ import annotations

import hashlib
import os
from itertools import count
from pathlib import Path

from substratus.local.outputs import OutputLimits, examine_load, examine_trained

LIMITS = OutputLimits()


def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_a_regular_file_is_hashed(tmp_path: Path) -> None:
    d = data_dir(tmp_path)
    (d / "x.jsonl").write_bytes(b'{"a": 1}\n')
    got = examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS)
    assert got.wrote and got.problem is None
    assert got.digest == "sha256:" + hashlib.sha256(b'{"a": 1}\n').hexdigest()


def test_nothing_written_is_not_a_problem_but_not_written(tmp_path: Path) -> None:
    d = data_dir(tmp_path)
    assert not examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS).wrote
    (d / "x.jsonl").write_bytes(b"")
    assert examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS) == examine_load(d, "y", "/data/y", LIMITS)


def test_a_link_to_a_host_file_is_never_followed(tmp_path: Path) -> None:
    """The hole: the control plane published the sha256 of whatever the link named."""
    secret = tmp_path / "secret"
    secret.write_text("HOST")
    d = data_dir(tmp_path)
    (d / "x.jsonl").symlink_to(secret)
    got = examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS)
    assert got.digest is None and "/data/x.jsonl" in (got.problem or "") and "link" in (got.problem or "")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    d = data_dir(tmp_path)
    os.mkfifo(d / "x.jsonl")
    assert "not a regular file" in (examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS).problem or "")


def test_a_sparse_file_is_refused_at_once(tmp_path: Path) -> None:
    """The hole: 24 GiB of holes cost 62 s of hashing on an action thread."""
    d = data_dir(tmp_path)
    with open(d / "x.jsonl", "wb") as fh:
        fh.truncate(24 * 2**30)
    got = examine_load(d, "x.jsonl", "/data/x.jsonl", LIMITS)
    assert got.digest is None and "sparse" in (got.problem or "")


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    d = data_dir(tmp_path)
    (d / "x.jsonl").write_bytes(b"x" * 3 * 2**20)
    got = examine_load(d, "x.jsonl", "/data/x.jsonl", OutputLimits(max_bytes=2**21))
    assert "more than the 2.0 MiB" in (got.problem or "")


def test_hashing_has_a_deadline(tmp_path: Path) -> None:
    d = data_dir(tmp_path)
    (d / "x.jsonl").write_bytes(b"x" * 3 * 2**20)
    ticks = count()
    got = examine_load(d, "x.jsonl", "/data/x.jsonl", OutputLimits(hash_seconds=2), clock=lambda: next(ticks))
    assert got.digest is None and "hashing /data/x.jsonl took more than 2s" in (got.problem or "")


def trained(tmp_path: Path) -> Path:
    t = tmp_path / "trained"
    (t / "sub").mkdir(parents=True)
    (t / "model.bin").write_bytes(b"w" * 10)
    (t / "sub" / "cfg.json").write_text("{}")
    return t


def test_a_trained_directory_of_files_and_inner_links_passes(tmp_path: Path) -> None:
    t = trained(tmp_path)
    (t / "latest").symlink_to("sub/cfg.json")
    (t / "sub" / "up").symlink_to("../model.bin")
    assert examine_trained(t, "/model/trained", LIMITS) == examine_trained(t, "/model/trained", LIMITS)
    got = examine_trained(t, "/model/trained", LIMITS)
    assert got.wrote and got.problem is None


def test_links_out_of_trained_are_refused(tmp_path: Path) -> None:
    for target in ("/etc/shadow", "../../outside", "../x/../../y"):
        t = trained(tmp_path / target.replace("/", "_"))
        (t / "sub" / "evil").symlink_to(target)
        got = examine_trained(t, "/model/trained", LIMITS)
        assert "/model/trained/sub/evil" in (got.problem or "") and "outside" in (got.problem or ""), target


def test_special_files_sparse_files_and_too_much_are_refused(tmp_path: Path) -> None:
    t = trained(tmp_path / "a")
    os.mkfifo(t / "pipe")
    assert "/model/trained/pipe" in (examine_trained(t, "/model/trained", LIMITS).problem or "")
    t = trained(tmp_path / "b")
    with open(t / "huge.bin", "wb") as fh:
        fh.truncate(2**34)
    assert "sparse" in (examine_trained(t, "/model/trained", LIMITS).problem or "")
    t = trained(tmp_path / "c")
    assert "more than 2 entries" in (examine_trained(t, "/model/trained", OutputLimits(max_entries=2)).problem or "")
    assert "more than" in (examine_trained(t, "/model/trained", OutputLimits(max_bytes=5)).problem or "")


def test_an_empty_trained_directory_wrote_nothing(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    assert not examine_trained(tmp_path / "t", "/model/trained", LIMITS).wrote
