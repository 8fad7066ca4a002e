"""Which paths never sync: sensible defaults, the directory's `.gitignore`, and `--exclude` patterns.

Patterns use .gitignore syntax (pathspec's GitIgnoreSpec: `*`, `**`, a
trailing `/` for directories, a leading `/` to anchor, `!` to re-include).
The defaults keep out version control, Jupyter's checkpoints, caches, our
own temporary files, and the contract's artifact directories (`/saved/`,
`/trained/`, `/logs/` in the working directory: model weights and job
output belong to the image and the store, not to your source directory).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pathspec

TEMP_MARK = ".sub-sync-"  # `.name.sub-sync-<random>`: a file being written, renamed into place when complete
DEFAULTS = [
    ".git/", ".hg/", ".svn/", ".ipynb_checkpoints/", "__pycache__/", "*.pyc", ".DS_Store", ".virtual_documents/",
    ".*.swp", "*~", f".*{TEMP_MARK}*", "/saved/", "/trained/", "/logs/",
]
# Directories pruned while listing a container (saves listing model weights only to drop them).
PRUNE_NAMES = [".git", ".hg", ".svn", ".ipynb_checkpoints", "__pycache__", ".virtual_documents"]
PRUNE_TOP = ["saved", "trained", "logs"]


class Excludes:
    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
        self.spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)

    @classmethod
    def for_dir(cls, root: Path, extra: Iterable[str] = ()) -> "Excludes":
        """Defaults, then `root/.gitignore` (read now: call again to pick up edits), then `extra`."""
        lines = list(DEFAULTS)
        gitignore = root / ".gitignore"
        if gitignore.is_file():
            lines += gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
        return cls(lines + list(extra))

    def file(self, path: str) -> bool:
        """Whether a file at this relative posix path is excluded (by itself or by a directory above it)."""
        return bool(self.spec.match_file(path))

    def directory(self, path: str) -> bool:
        """Whether a whole directory is excluded, so a scan need not go into it."""
        return bool(self.spec.match_file(path.rstrip("/") + "/"))
