"""Reading training data: JSONL and plain text, limits, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from substratus_ml import corpus


def test_jsonl_records_honour_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"record {i}"}) for i in range(10)) + "\n")
    assert corpus.read_records(path, limit=3) == ["record 0", "record 1", "record 2"]
    assert len(corpus.read_records(path)) == 10


def test_plain_text_splits_on_blank_lines_and_fortune_separators(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("one\nline two\n%\nthree\n\nfour\n")
    assert corpus.read_records(path) == ["one\nline two", "three", "four"]


@pytest.mark.parametrize("content, message", [
    ("", "no text records"),
    ('{"text": "ok"}\n{"txt": "wrong key"}\n', 'data.jsonl:2: expected an object with a string "text"'),
    ('{"text": "ok"}\n{not json\n', "data.jsonl:2: not valid JSON"),
])
def test_bad_data_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(corpus.DataError, match=message):
        corpus.read_records(path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(corpus.DataError, match="does not exist"):
        corpus.read_records(tmp_path / "absent.jsonl")


def test_blocks_drop_the_tail_but_keep_a_short_stream() -> None:
    assert corpus.blocks(list(range(10)), 4).shape == (2, 4)
    assert corpus.blocks(list(range(3)), 4).shape == (1, 3)


def test_holdout_keeps_a_single_record_for_both() -> None:
    assert corpus.split_holdout(["a"]) == (["a"], ["a"])
    train, held = corpus.split_holdout([str(i) for i in range(20)])
    assert (len(train), len(held)) == (18, 2)
