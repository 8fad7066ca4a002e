"""Turn Debian's fortune files into the plain-text pre-training corpus of tiny-gpt.

Called by build-model.sh during the image build. Fortune files separate entries
with lines holding only ``%`` and indent attributions with runs of tabs; a model
this small would spend its capacity on that whitespace (and on ruler lines of
dashes, which some files use; those are dropped). Attribution lines ("-- Mark
Twain"), IRC log lines ("<nick> ...") and e-mail addresses are dropped too: a
small model learns their shape first and then loops on it ("-- H. R. R. R.").
Each entry is written
with its lines stripped and inner whitespace collapsed, entries separated by one
blank line: the paragraph records ``substratus-ml init-tiny`` reads. Plain text
rather than JSONL, because init-tiny also trains its BPE tokenizer on the raw file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

SKIP = {"art", "ascii-art"}  # drawings, not prose
SPACES = re.compile(r"[ \t]+")
WORDY = re.compile(r"[A-Za-z0-9]")
NOT_PROSE = re.compile(r"^(--|- |~|<[^>]+>)|@")
MIN_ENTRY_CHARS = 20


def entries(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for raw in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = [SPACES.sub(" ", line).strip() for line in raw.splitlines()]
        # Drop rulers and other decoration ("-----", "* * *"): no letters or digits.
        entry = "\n".join(line for line in lines if WORDY.search(line) and not NOT_PROSE.search(line))
        if len(entry) >= MIN_ENTRY_CHARS:
            out.append(entry)
    return out


def fortune_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
                  and p.name not in SKIP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fortunes", type=Path, default=Path("/usr/share/games/fortunes"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    files = fortune_files(args.fortunes)
    if not files:
        print(f"prepare_corpus: no fortune files under {args.fortunes}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with args.out.open("w", encoding="utf-8") as fh:
        for path in files:
            for entry in entries(path):
                fh.write(entry + "\n\n")
                count += 1
    print(f"prepare_corpus: {count} entries from {len(files)} files -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
