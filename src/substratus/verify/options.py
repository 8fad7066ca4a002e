"""What to verify and how: the inputs of one `sub verify` run.

Filled in once by the CLI from its flags and passed down; nothing here reads
the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from substratus.build.naming import IMAGE_REPO, digest

KINDS = {"model": "Model", "dataset": "Dataset"}


@dataclass(frozen=True)
class Target:
    """A source to build (local directory or git repository) or an image that exists already."""

    kind: str                     # "Model" or "Dataset"
    source: Optional[str] = None  # a directory or a git URL; None with `image`
    path: str = ""                # sub-directory of a git repository
    branch: str = ""              # git branch; "" for the default branch
    image: Optional[str] = None   # verify this image instead of building one

    @property
    def is_git(self) -> bool:
        if self.source is None:
            return False
        s = self.source
        return "://" in s or s.startswith("git@") or s.endswith(".git") or bool(self.path or self.branch)

    def describe(self) -> str:
        if self.image:
            return f"image {self.image}"
        if self.is_git:
            where = f" @ {self.branch}" if self.branch else ""
            return f"git {self.source}{where}" + (f" path {self.path}" if self.path else "")
        return f"dir {self.source}"


@dataclass(frozen=True)
class Options:
    skip: frozenset[str] = frozenset()
    serve_timeout: float = 120.0
    notebook_timeout: float = 120.0
    train_timeout: float = 900.0
    load_timeout: float = 900.0
    fuzz_timeout: float = 60.0
    request_timeout: float = 120.0
    fuzz_examples: int = 10
    epochs: int = 1
    batch_size: int = 2
    data_limit: int = 16
    data_file: Optional[Path] = None
    rebuild: bool = False
    keep_image: bool = True
    prompt: str = "Shall I compare thee"
    max_new_tokens: int = 8
    build_log: bool = True
    strict: bool = False  # a broken check beyond the written contract fails the run


def verify_image_tag(kind: str, revision: str, path: str = "") -> str:
    """Content-addressed tag for an image built from a source: same content, same tag."""
    return f"{IMAGE_REPO}/verify-{kind.lower()}:{digest('verify', kind, revision, path)[:16]}"


def trained_image_tag(run_id: str) -> str:
    return f"{IMAGE_REPO}/verify-model-trained:{run_id}"
