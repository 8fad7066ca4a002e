"""What a Dockerfile builds FROM, and which local images those names point at now.

Images are named by content. A source that did not change can still need a
rebuild: its `FROM localhost/...:tag` may now name a different image (a
rebuilt base). `fingerprint` folds the IDs of the base images present
locally into the content hash, so a new base image means a new build.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from substratus.runtimes.base import Runtime

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S+))?", re.I)
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I)
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def from_refs(dockerfile: str) -> list[str]:
    """Image references in FROM lines, with ARG defaults filled in; no stages, no scratch."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    refs: list[str] = []
    for line in dockerfile.splitlines():
        if m := _ARG.match(line):
            args.setdefault(m.group(1), (m.group(2) or "").strip("\"'"))
        elif m := _FROM.match(line):
            ref = _VAR.sub(lambda v: args.get(v.group(1), ""), m.group(1))
            if ref and ref.lower() != "scratch" and ref not in stages:
                refs.append(ref)
            if m.group(2):
                stages.add(m.group(2))
    return refs


def fingerprint(runtime: Runtime, context: Path, dockerfile: str = "Dockerfile") -> str:
    """`ref@id` of each base image (`ref@absent` when not present locally), joined."""

    def lookup(ref: str) -> Optional[str]:
        info = runtime.image_info(ref)
        return info.id if info else None

    return fingerprint_with(lookup, context, dockerfile)


def fingerprint_with(lookup: Callable[[str], Optional[str]], context: Path, dockerfile: str = "Dockerfile") -> str:
    """`fingerprint` with image ids from `lookup` (the control plane's image cache: no engine call)."""
    path = context / dockerfile
    if not path.is_file():
        return ""
    return ",".join(f"{ref}@{lookup(ref) or 'absent'}" for ref in from_refs(path.read_text(errors="replace")))
