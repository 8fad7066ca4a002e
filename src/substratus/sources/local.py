"""A local directory source: snapshot it by content so later edits are seen as changes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from substratus.errors import SourceError
from substratus.sources import ResolvedSource

SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".ipynb_checkpoints"}


def require_dockerfile(context: Path, field: str, where: str) -> None:
    if not (context / "Dockerfile").is_file():
        raise SourceError(f"{field}: no Dockerfile in {where}",
                          field=field,
                          hint="the contract needs a Dockerfile at the root of the source directory")


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        out.extend(Path(dirpath) / f for f in sorted(filenames))
    return out


def digest(root: Path) -> str:
    """Content hash of a directory: relative paths, modes and bytes."""
    h = hashlib.sha256()
    for f in _files(root):
        rel = f.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + oct(f.stat().st_mode & 0o777).encode() + b"\0")
        if f.is_symlink():
            h.update(os.readlink(f).encode())
        else:
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def snapshot(directory: str, cache: Path, field: str = "spec.source.dir") -> ResolvedSource:
    root = Path(directory)
    if not root.is_absolute():
        raise SourceError(f"{field}: {directory!r} must be resolved against the manifest's directory",
                          field=field, hint="apply the manifest with `sub apply -f FILE`")
    if not root.is_dir():
        raise SourceError(f"{field}: directory {directory} does not exist", field=field,
                          hint="dir is relative to the manifest file; check the path")
    require_dockerfile(root, field, str(root))
    rev = digest(root)
    target = cache / rev[:24]
    if not target.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".snap-", dir=cache))
        shutil.copytree(root, tmp / "ctx", symlinks=True, ignore=shutil.ignore_patterns(*SKIP_DIRS))
        try:
            os.replace(tmp / "ctx", target)
        except OSError:
            if not target.is_dir():  # not a twin fetched at the same moment (same content): a real error
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ResolvedSource(revision=rev, context=target, description=f"dir {root} ({rev[:7]})", dir=str(root))
