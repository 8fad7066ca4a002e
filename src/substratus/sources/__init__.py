"""Turning `spec.source.git` / `spec.source.dir` into a build context on disk.

Called by the control plane when an object is applied, so that a URL that
does not clone, a branch or path that does not exist, or a missing Dockerfile
is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ResolvedSource:
    revision: str      # git commit, or a content digest for a local dir
    context: Path      # directory holding the Dockerfile
    description: str   # for people: "git file:///x @ main (abc1234) path p"
