"""Turning `spec.source.git` / `spec.source.dir` into a build context on disk.

Called by the control plane when an object is applied, so that a URL that
does not clone, a branch or path that does not exist, or a missing Dockerfile
is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class ResolvedSource:
    revision: str      # git tree of `path` (or commit), or a content digest for a local dir
    context: Path      # directory holding the Dockerfile
    description: str   # for people: "git file:///x @ main (abc1234) path p"
    git_url: Optional[str] = None     # credentials removed
    git_commit: Optional[str] = None
    git_path: Optional[str] = None
    dir: Optional[str] = None
