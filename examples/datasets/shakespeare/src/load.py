"""Convert the Open Shakespeare texts into the JSONL file Substratus trains on.

Called by load.sh (the dataset contract's entry point). Each record is
``{"text": ..., "title": ...}``: consecutive paragraphs of one work (a speech, a
stage direction, a sonnet) joined until they reach about ``--chunk-chars``
characters. Records are shuffled with a fixed seed so that any prefix (the
model's ``dataLimit`` takes the first N lines) mixes all the works, and the
output is the same on every run.

With ``--progress FILE`` (load.sh passes ``/dataset/logs/progress.jsonl``, the
contract's optional progress extension) it appends one JSON object per work
read and one when the file is written: ``step`` and ``total_steps`` (works),
``time`` (unix seconds), ``records`` and ``bytes`` so far. Loading has no
epochs or loss, so those keys are left out.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} load: {message}", flush=True)


def titles(corpus: Path) -> dict[str, str]:
    """Work titles by file stem, from the package's metadata.txt (INI sections)."""
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(corpus / "metadata.txt", encoding="utf-8")
    return {section: meta[section].get("title", section) for section in meta.sections()}


def paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated blocks, without the title and by-line at the top."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    blocks = [b for b in blocks if b]
    for index, block in enumerate(blocks):
        if index == 0 or block.lower().startswith("by william shakespeare"):
            continue
        yield block


def chunks(blocks: Iterator[str], chunk_chars: int) -> Iterator[str]:
    """Join consecutive blocks until a chunk holds at least ``chunk_chars`` characters."""
    current: list[str] = []
    size = 0
    for block in blocks:
        current.append(block)
        size += len(block) + 2
        if size >= chunk_chars:
            yield "\n\n".join(current)
            current, size = [], 0
    if current:
        yield "\n\n".join(current)


class Progress:
    """Appends whole JSON lines to the progress file (or does nothing without one)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, total: int, **numbers: float) -> None:
        if self.path is None:
            return
        line = json.dumps({"step": step, "total_steps": total, "time": round(time.time(), 3), **numbers})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def records(corpus: Path, chunk_chars: int, progress: Progress) -> list[dict[str, str]]:
    names = titles(corpus)
    files = sorted(corpus.glob("*_gut.txt"))
    if not files:
        raise SystemExit(f"load: ERROR: no *_gut.txt texts under {corpus}; the image build is broken")
    out: list[dict[str, str]] = []
    for step, path in enumerate(files, start=1):
        title = names.get(path.stem, path.stem)
        text = path.read_text(encoding="utf-8", errors="replace")
        works = [{"text": c, "title": title} for c in chunks(paragraphs(text), chunk_chars)]
        log(f"{path.name}: {title}: {len(works)} records")
        out.extend(works)
        # One step per work; the file written is the last step (total = works + 1).
        progress.write(step, len(files) + 1, records=len(out))
    return out


def write_jsonl(rows: list[dict[str, str]], out: Path) -> int:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/dataset/corpus"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chunk-chars", type=int,
                        default=int(os.environ.get("LOAD_CHUNK_CHARS", "600")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", type=Path, help="append progress as JSON lines here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    progress = Progress(args.progress)
    log(f"reading {args.corpus}, chunks of about {args.chunk_chars} characters")
    rows = records(args.corpus, args.chunk_chars, progress)
    random.Random(args.seed).shuffle(rows)
    try:
        size = write_jsonl(rows, args.out)
    except OSError as exc:
        log(f"ERROR: cannot write {args.out}: {exc}. Is the volume for its folder "
            "mounted and writable?")
        return 1
    works = len(list(args.corpus.glob("*_gut.txt")))
    progress.write(works + 1, works + 1, records=len(rows), bytes=size)
    log(f"wrote {len(rows)} records ({size / 1e6:.1f} MB) to {args.out} "
        f"in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
