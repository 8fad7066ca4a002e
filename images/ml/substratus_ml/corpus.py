"""Turn training files into examples and fixed-size token blocks with labels.

Both ``init-tiny`` (pre-training on a base corpus) and ``train`` (fine-tuning on
a Substratus dataset) read data through here, so the two agree on what a
"record" is: one JSON object per line of a JSONL file (``{"text": ...}``, or a
chat or prompt/completion example, :mod:`substratus_ml.examples`), or one
paragraph of a plain-text file (paragraphs end at a blank line or at a line
holding only ``%``, the separator of Debian's fortune files). Every error names
the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from substratus_ml import examples
from substratus_ml.examples import Encoded, Example

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


@dataclass(frozen=True)
class Sourced:
    """An example and where it was read (``file:line``, or the file for plain text)."""

    example: Example
    where: str


def read_examples(path: Path, limit: int | None = None) -> list[Sourced]:
    """All examples under ``path`` (at most ``limit``), in file order: JSONL lines of any
    shape of :mod:`substratus_ml.examples`, or paragraphs of plain text."""
    found: list[Sourced] = []
    for file in data_files(path):
        found.extend(_examples_of(file))
        if limit is not None and len(found) >= limit:
            return found[:limit]
    if not found:
        raise DataError(f"no text records found in {path} (expected JSONL lines like "
                        '{"text": "..."}, {"messages": [...]} or {"prompt": ..., "completion": ...}, '
                        "or plain text)")
    return found


def read_records(path: Path, limit: int | None = None) -> list[str]:
    """Text records only (pre-training, ``init-tiny``): chat and prompt/completion lines are refused."""
    records: list[str] = []
    for item in read_examples(path, limit):
        if not isinstance(item.example, str):
            raise DataError(f'{item.where}: init-tiny reads text records only ({{"text": ...}} '
                            "lines or plain text)")
        records.append(item.example)
    return records


def _examples_of(file: Path) -> list[Sourced]:
    text = file.read_text(encoding="utf-8", errors="replace")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if file.suffix == ".jsonl" or first.lstrip().startswith("{"):
        return _jsonl_examples(file, text)
    return [Sourced(paragraph, str(file)) for paragraph in _paragraphs(text)]


def _jsonl_examples(file: Path, text: str) -> list[Sourced]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            example = examples.parse(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{number}: not valid JSON ({exc.msg})") from exc
        except examples.ShapeError as exc:
            raise DataError(f"{file}:{number}: {exc}") from exc
        if example is not None:
            found.append(Sourced(example, f"{file}:{number}"))
    return found


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


T = TypeVar("T")


def split_holdout(records: Sequence[T], fraction: float = 0.1) -> tuple[list[T], list[T]]:
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



IGNORE = -100
"""The label of a token whose prediction is not learned (PyTorch's cross-entropy ``ignore_index``)."""


@dataclass(frozen=True)
class TokenBlocks:
    """Equal blocks of token ids and their labels (``IGNORE`` where nothing is learned)."""

    ids: torch.Tensor  # [n, block]
    labels: torch.Tensor  # [n, block]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def all_learned(cls, ids: torch.Tensor) -> "TokenBlocks":
        return cls(ids, ids)


def encoded_stream(encoded: Iterable[Encoded], eos_id: int) -> tuple[list[int], list[bool]]:
    """Concatenate encoded examples, each followed by the end-of-sequence token.

    The end-of-sequence token is learned when the example's last token is (a
    completion or an assistant turn ends there): the model learns to stop.
    """
    ids: list[int] = []
    learned: list[bool] = []
    for item in encoded:
        ids += item.ids
        learned += item.learned
        ids.append(eos_id)
        learned.append(item.learned[-1] if item.learned else False)
    return ids, learned


def labelled_blocks(ids: Sequence[int], learned: Sequence[bool], block_size: int) -> TokenBlocks:
    """:func:`blocks` of the ids, with labels that ignore the tokens not learned."""
    inputs = blocks(ids, block_size)
    mask = torch.tensor(list(learned[: inputs.numel()]), dtype=torch.bool).view(inputs.shape)
    if bool(mask.all()):
        return TokenBlocks.all_learned(inputs)
    return TokenBlocks(inputs, inputs.masked_fill(~mask, IGNORE))
