"""The progress series endpoint's reader (api/dashboard/series.py): bad lines, links, caps."""

from __future__ import annotations

import json
import os
from pathlib import Path

from substratus.api.dashboard import series

RUN = "0123456789abcdef"


def write_run(object_dir: Path, lines: list[str], run: str = RUN) -> Path:
    logs = object_dir / run / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "progress.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def point(step: int, loss: float, **extra: float) -> str:
    return json.dumps({"step": step, "total_steps": 10, "loss": loss, **extra})


def test_bad_lines_are_skipped_and_counted_not_fatal(tmp_path: Path) -> None:
    write_run(tmp_path, [point(1, 2.0), "not json", "", '{"loss": "high"}', "[1, 2]", point(2, 1.5, lr=0.1),
                         '{"step": 3, "loss": NaN}', "x" * 5000, point(3, 1.2)])
    s = series.load_series(tmp_path, "Model")
    # a NaN loss is dropped by the parser, its step kept; the chart leaves such points out
    assert [p.get("loss") for p in s.points] == [2.0, 1.5, None, 1.2]
    assert s.skipped == 4, s  # "not json", a string loss only, an array, an over-long line
    assert s.phase == "train" and s.run == RUN and not s.truncated
    wire = s.wire()
    assert wire["metrics"] == ["loss", "lr"] and wire["points"][1]["lr"] == 0.1


def test_no_run_means_an_empty_series(tmp_path: Path) -> None:
    s = series.load_series(tmp_path / "missing", "Dataset")
    assert s.points == [] and s.run is None and s.phase == "load"


def test_a_linked_progress_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text(point(1, 9.9) + "\n")
    obj = tmp_path / "obj"
    (obj / RUN / "logs").mkdir(parents=True)
    os.symlink(secret, obj / RUN / "logs" / "progress.jsonl")
    assert series.runs_with_progress(obj) == []
    text, _ = series.read_tail_nofollow(obj, (RUN, "logs", "progress.jsonl"), 1024)
    assert text == ""


def test_a_linked_logs_directory_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "progress.jsonl").write_text(point(1, 9.9) + "\n")
    obj = tmp_path / "obj"
    (obj / RUN).mkdir(parents=True)
    os.symlink(elsewhere, obj / RUN / "logs")
    text, _ = series.read_tail_nofollow(obj, (RUN, "logs", "progress.jsonl"), 1024)
    assert text == ""
    assert series.load_series(obj, "Model", RUN).points == []


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    (tmp_path / RUN / "logs").mkdir(parents=True)
    os.mkfifo(tmp_path / RUN / "logs" / "progress.jsonl")
    text, _ = series.read_tail_nofollow(tmp_path, (RUN, "logs", "progress.jsonl"), 1024)
    assert text == ""


def test_only_the_tail_of_a_big_file_is_read(tmp_path: Path) -> None:
    path = write_run(tmp_path, [point(i, 1.0 / i) for i in range(1, 2001)])
    text, truncated = series.read_tail_nofollow(tmp_path, (RUN, "logs", "progress.jsonl"), 4096)
    assert truncated and len(text) <= 4096
    points, skipped = series.parse_series(text)
    assert skipped == 0, "the partial first line is dropped, not counted as bad"
    assert points[-1]["step"] == 2000
    assert path.stat().st_size > 4096


def test_long_series_are_thinned_keeping_first_and_last() -> None:
    points = [{"step": i} for i in range(10_000)]
    thinned = series.thin(points, 100)
    assert len(thinned) == 100 and thinned[0]["step"] == 0 and thinned[-1]["step"] == 9999
    assert series.thin(points[:5], 100) == points[:5]


def test_the_newest_run_is_the_default_and_others_can_be_asked_for(tmp_path: Path) -> None:
    old = write_run(tmp_path, [point(1, 5.0)], run="aaaaaaaaaaaaaaaa")
    new = write_run(tmp_path, [point(1, 1.0), point(2, 0.5)], run="bbbbbbbbbbbbbbbb")
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    (tmp_path / "build.log").write_text("not a run")
    (tmp_path / "not-a-run-dir").mkdir()
    s = series.load_series(tmp_path, "Model")
    assert s.runs == ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"] and len(s.points) == 2
    assert series.load_series(tmp_path, "Model", "aaaaaaaaaaaaaaaa").points[0]["loss"] == 5.0
    unknown = series.load_series(tmp_path, "Model", "cccccccccccccccc")
    assert unknown.points == [] and unknown.run is None
