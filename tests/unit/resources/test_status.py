"""Reasons, conditions and progress: the vocabulary every layer reads."""

from __future__ import annotations

import re
from pathlib import Path

from substratus.resources import progress
from substratus.resources.status import DONE, FAILED, IN_PROGRESS, Condition, Reason, merge_conditions

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_reason_is_in_exactly_one_group() -> None:
    assert FAILED | DONE | IN_PROGRESS == set(Reason)
    assert not (FAILED & DONE) and not (FAILED & IN_PROGRESS) and not (DONE & IN_PROGRESS)
    assert all(r.describe() for r in Reason)


def test_the_readme_reason_table_lists_every_reason_and_nothing_else() -> None:
    text = README.read_text()
    table = text[text.index("| Reason | Meaning |"):]
    table = table[:table.index("\n\n")]
    named = set(re.findall(r"`([A-Za-z]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[2:])))
    assert named == {r.value for r in Reason}


def cond(status: str, reason: str, at: str = "") -> Condition:
    return Condition(type="Ready", status=status, reason=reason, last_transition_time=at)  # type: ignore[arg-type]


def test_transition_time_changes_only_when_the_status_flips() -> None:
    old = [cond("Unknown", "Building", "t1")]
    assert merge_conditions(old, [cond("Unknown", "Loading")], "t2")[0].last_transition_time == "t1"
    assert merge_conditions(old, [cond("True", "Loaded")], "t2")[0].last_transition_time == "t2"
    assert merge_conditions([], [cond("True", "Loaded")], "t3")[0].last_transition_time == "t3"


def test_progress_lines_that_are_not_usable_are_skipped_not_fatal() -> None:
    text = "\n".join([
        '{"step": 1, "total_steps": 4, "loss": 2.0, "time": 10}',
        "garbage", "[1, 2]", '{"step": "three"}', '{"loss": NaN}', '{"note": "no numbers"}', "x" * 5000,
        '{"step": 2, "loss": 1.5, "time": 20, "tokens_per_second": 99.5, "flag": true}',
    ])
    points = progress.parse(text)
    assert [p.step for p in points] == [1, 2]
    summary = progress.summarise(points, "train")
    assert summary is not None
    assert (summary.step, summary.total_steps, summary.percent, summary.loss) == (2, 4, 50.0, 1.5)
    assert summary.eta_seconds == 20.0 and summary.metrics == {"tokens_per_second": 99.5}


def test_no_progress_is_none() -> None:
    assert progress.summarise(progress.parse(""), "load") is None
