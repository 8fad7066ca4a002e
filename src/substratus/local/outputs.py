"""Judging what a load or training job left behind, without trusting it.

A loader has its run's `data/` mounted read-write and a trainer its `trained/`, so they decide
what lies there: a link to a host file (the control plane, often root, would follow it and
publish that file's sha256 as the Dataset's digest: a hash oracle on any host file, and a lie in
the lineage), a FIFO, a 16 TiB sparse file that costs nothing on disk and a minute of hashing
per 24 GiB, a million empty files. So the data file is opened with O_NOFOLLOW from the run's own
directory, must be a regular file within `OutputLimits.max_bytes` whose allocated blocks are
not a small fraction of its size, and is hashed through that same descriptor within a
deadline; /model/trained is walked without following links and may hold only regular files,
directories and links that stay inside it, at most `max_entries` of them and `max_bytes` in all.
What breaks a rule fails the job, naming the path (`Examined.problem`). Called by the local
executor when a job has exited (`CollectJob`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CHUNK = 1 << 20


@dataclass(frozen=True)
class OutputLimits:
    max_bytes: int = 64 * 2**30     # a data file, or /model/trained in all (SUBSTRATUS_MAX_OUTPUT)
    max_entries: int = 100_000      # files, directories and links in /model/trained
    sparse_ratio: int = 8           # a file over 1 MiB with fewer allocated bytes than size/8 is sparse
    hash_seconds: float = 600.0     # the most hashing one data file may take


@dataclass(frozen=True)
class Examined:
    wrote: bool                     # something is there (the contract's "wrote its output")
    problem: Optional[str] = None   # why the output is refused, naming the path
    digest: Optional[str] = None    # "sha256:<hex>" of a data file


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def sparse(st: os.stat_result, limits: OutputLimits) -> bool:
    return st.st_size > 2**20 and st.st_blocks * 512 * limits.sparse_ratio < st.st_size


def examine_load(data_dir: Path, filename: str, shown: str, limits: OutputLimits,
                 clock: Callable[[], float] = time.monotonic) -> Examined:
    """The data file `filename` in `data_dir` (shown to people as `shown`, e.g. /data/x.jsonl)."""
    try:
        dfd = os.open(data_dir, DIR_FLAGS)
    except OSError:
        return Examined(False)
    try:
        fd = os.open(filename, FILE_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return Examined(False)
    except OSError as err:
        what = "a symbolic link" if err.errno == errno.ELOOP else os.strerror(err.errno or 0)
        return Examined(True, f"LOAD_DATA_PATH ({shown}) is {what}; the data must be a regular file written "
                              "there (links are never followed)")
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        problem = file_problem(st, shown, limits)
        if problem:
            return Examined(st.st_size > 0, problem)
        if st.st_size == 0:
            return Examined(False)
        return hash_within(fh, shown, limits, clock)


def file_problem(st: os.stat_result, shown: str, limits: OutputLimits) -> Optional[str]:
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is not a regular file (a FIFO, socket or device); outputs must be regular files"
    if st.st_size > limits.max_bytes:
        return (f"{shown} is {gib(st.st_size)}, more than the {gib(limits.max_bytes)} an output may be "
                "(SUBSTRATUS_MAX_OUTPUT)")
    if sparse(st, limits):
        return (f"{shown} is sparse: {gib(st.st_size)} long but {gib(st.st_blocks * 512)} on disk; outputs must "
                "be written out, not holes")
    return None


def hash_within(fh: BinaryIO, shown: str, limits: OutputLimits, clock: Callable[[], float]) -> Examined:
    h = hashlib.sha256()
    deadline = clock() + limits.hash_seconds
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        h.update(chunk)
        if clock() > deadline:
            return Examined(True, f"hashing {shown} took more than {limits.hash_seconds:.0f}s; the load is refused")
    return Examined(True, digest=f"sha256:{h.hexdigest()}")


def examine_trained(trained: Path, shown: str, limits: OutputLimits) -> Examined:
    """/model/trained (`trained` on this machine, `shown` for people): non-empty, and every entry
    a regular file, a directory or a link that stays inside, within the limits."""
    try:
        fd = os.open(trained, DIR_FLAGS)
    except OSError:
        return Examined(False)
    counts = [0, 0]  # entries, bytes
    try:
        problem = walk(fd, "", shown, limits, counts)
    finally:
        os.close(fd)
    return Examined(counts[0] > 0, problem)


def walk(dfd: int, prefix: str, shown: str, limits: OutputLimits, counts: list[int]) -> Optional[str]:
    with os.scandir(dfd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        where = f"{shown}/{rel}"
        counts[0] += 1
        if counts[0] > limits.max_entries:
            return f"{shown} holds more than {limits.max_entries} entries"
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(entry.name, dir_fd=dfd)
            if target.startswith("/") or not inside(prefix, target):
                return f"{where} is a link to {target}, outside {shown}; links must stay inside it"
        elif stat.S_ISDIR(st.st_mode):
            sub = os.open(entry.name, DIR_FLAGS, dir_fd=dfd)
            try:
                problem = walk(sub, rel + "/", shown, limits, counts)
            finally:
                os.close(sub)
            if problem:
                return problem
        else:
            problem = file_problem(st, where, limits)
            if problem:
                return problem
            counts[1] += st.st_size
            if counts[1] > limits.max_bytes:
                return f"{shown} holds more than {gib(limits.max_bytes)} (SUBSTRATUS_MAX_OUTPUT)"
    return None


def inside(prefix: str, target: str) -> bool:
    """A relative link target, read from the directory `prefix`, stays inside the walked root."""
    depth = len([p for p in prefix.split("/") if p])
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True
