"""Turn training files into text records and fixed-size token blocks.

Both ``init-tiny`` (pre-training on a base corpus) and ``train`` (fine-tuning on
a Substratus dataset) read text through here, so the two agree on what a
"record" is: one ``{"text": ...}`` object per line of a JSONL file, or one
paragraph of a plain-text file (paragraphs end at a blank line or at a line
holding only ``%``, the separator of Debian's fortune files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

Encoder = Callable[[str], list[int]]
"""Text to token ids, e.g. a tokenizer's ``encode``."""


class DataError(Exception):
    """The training data is missing, empty or malformed; the message says which."""


def data_files(path: Path) -> list[Path]:
    """The files behind ``path``: itself, or the regular files of a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"data directory {path} holds no files")
        return files
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    return [path]


def read_records(path: Path, limit: int | None = None) -> list[str]:
    """All text records under ``path`` (at most ``limit`` of them), in file order."""
    records: list[str] = []
    for file in data_files(path):
        records.extend(_records_of(file))
        if limit is not None and len(records) >= limit:
            return records[:limit]
    if not records:
        raise DataError(f"no text records found in {path} (expected JSONL lines like "
                        '{"text": "..."} or plain text)')
    return records


def _records_of(file: Path) -> list[str]:
    text = file.read_text(encoding="utf-8", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if file.suffix == ".jsonl" or first.lstrip().startswith("{"):
        return _jsonl_records(file, text)
    return _paragraphs(text)


def _jsonl_records(file: Path, text: str) -> list[str]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise DataError(f'{file}:{number}: expected an object with a string "text" field')
        if obj["text"].strip():
            records.append(obj["text"])
    return records


def _paragraphs(text: str) -> list[str]:
    records: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() in ("", "%"):
            if current:
                records.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        records.append("\n".join(current))
    return records


def split_holdout(records: Sequence[str], fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """Split off the last ``fraction`` of records for evaluation.

    With a single record there is nothing to hold out, so that record is both
    trained and evaluated on (the loss then shows memorisation, not generalisation).
    """
    if len(records) < 2:
        return list(records), list(records)
    held = max(1, round(len(records) * fraction))
    return list(records[:-held]), list(records[-held:])


def token_stream(records: Iterable[str], encode: Encoder, eos_id: int) -> list[int]:
    """Concatenate encoded records, each followed by the end-of-sequence token."""
    ids: list[int] = []
    for record in records:
        ids.extend(encode(record))
        ids.append(eos_id)
    return ids


def blocks(ids: Sequence[int], block_size: int) -> torch.Tensor:
    """Cut a token stream into equal blocks, shape ``[n, block_size]``.

    The tail that does not fill a block is dropped, unless the stream is
    shorter than one block: then the whole stream is the only block.
    """
    if len(ids) < 2:
        raise DataError("the data encodes to fewer than 2 tokens; nothing to learn from")
    size = min(block_size, len(ids))
    count = len(ids) // size
    return torch.tensor(list(ids[: count * size]), dtype=torch.long).view(count, size)

