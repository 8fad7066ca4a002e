"""A local directory source: snapshot it by content so later edits are seen as changes.

A build context may hold regular files, directories and symlinks that stay
inside it. Anything else is refused with its path before a byte is read: a
FIFO would block the reader forever (while `apply` holds its lock), a device
or socket has no content to build from, and a symlink that dangles or leaves
the directory would either fail the build later or copy in a host file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from substratus.errors import SourceError
from substratus.sources import ResolvedSource, dockerfile

SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".ipynb_checkpoints"}
KINDS = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device"}


def require_dockerfile(context: Path, field: str, where: str) -> None:
    if not (context / "Dockerfile").is_file():
        raise SourceError(f"{field}: no Dockerfile in {where}",
                          field=field,
                          hint="the contract needs a Dockerfile at the root of the source directory")


def _files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        # os.walk lists a symlink to a directory among dirnames without entering it: keep it as a file.
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        out.extend(Path(dirpath) / f for f in sorted(filenames + links))
    return out


def check_tree(root: Path, field: str, shown: str = "") -> list[Path]:
    """Every file under `root` (skipped dirs left out), or SourceError naming the first bad one.

    `shown` replaces `root` in messages (a git source names the repository, not the cache).
    """
    real_root = os.path.realpath(root)
    files = _files(root)
    for f in files:
        mode = f.lstat().st_mode
        where = f"{shown or root}/{f.relative_to(root).as_posix()}"
        if stat.S_ISLNK(mode):
            _check_link(f, real_root, where, field)
        elif not stat.S_ISREG(mode):
            what = KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise SourceError(f"{field}: {where} is {what}; a build context may hold only regular files, "
                              "directories and symlinks inside it", field=field,
                              hint=f"remove {where} (or move it out of the source directory)")
    return files


def _check_link(link: Path, real_root: str, where: str, field: str) -> None:
    target = os.readlink(link)
    resolved = os.path.realpath(link)
    if os.path.commonpath([real_root, resolved]) != real_root:
        raise SourceError(f"{field}: symlink {where} -> {target} points outside the source directory",
                          field=field, hint=f"copy what it points to into the directory, or remove {where}")
    if not os.path.exists(resolved):
        raise SourceError(f"{field}: symlink {where} -> {target} is dangling (its target does not exist)",
                          field=field, hint=f"fix or remove {where}")


def _read_regular(f: Path) -> bytes:
    """A regular file's bytes, opened without following links or blocking on a swapped-in FIFO."""
    fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(f"{f} changed into a special file while it was read")
        return fh.read()


def digest(root: Path, files: list[Path] | None = None) -> str:
    """Content hash of a directory: relative paths, modes and bytes."""
    h = hashlib.sha256()
    for f in files if files is not None else _files(root):
        rel = f.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + oct(f.stat().st_mode & 0o777).encode() + b"\0")
        if f.is_symlink():
            h.update(os.readlink(f).encode())
        else:
            h.update(_read_regular(f))
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
    files = check_tree(root, field)
    rev = digest(root, files)
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
    dockerfile.check_context(target, field, str(root))  # what will be built: the snapshot, not the live dir
    return ResolvedSource(revision=rev, context=target, description=f"dir {root} ({rev[:7]})", dir=str(root))
