"""The sync planner: what to copy, delete or keep as a conflict, from two listings and the last sync.

Pure: no I/O, no clock (the time for conflict names is passed in). Its inputs
are a listing of each side (relative posix path -> content digest, mtime,
size) and `base`, what both sides agreed on after the last round (path ->
digest). Per path, as Unison and git's three-way merge decide:

    local     remote    vs base                      action
    same      same      -                            agreed (nothing to do)
    changed   as base   local changed                copy to remote
    as base   changed   remote changed               copy to local
    changed   changed   both changed, differently    conflict: newer wins, the other kept beside it
    present   missing   unchanged since base         delete locally (it was deleted remotely)
    present   missing   changed, or never synced     copy to remote (a change beats a delete)
    missing   missing   -                            forget

With no base (a first round), every difference is a conflict or a copy, never
a delete: starting a sync can only add files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal, Optional, Union

SideName = Literal["local", "remote"]


@dataclass(frozen=True)
class Entry:
    """A file as a side's scan saw it."""

    digest: str    # sha256 hex of the content
    mtime: float   # seconds since the epoch (whole seconds where a side knows no better)
    size: int


@dataclass(frozen=True)
class Copy:
    path: str
    to: SideName       # the side that receives the file
    digest: str


@dataclass(frozen=True)
class Delete:
    path: str
    on: SideName


@dataclass(frozen=True)
class Conflict:
    """Both sides changed `path` differently: `winner`'s copy stays at `path` on both sides, the
    other side's copy is kept at `keep_as` on both sides."""

    path: str
    winner: SideName
    keep_as: str


Action = Union[Copy, Delete, Conflict]


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    agreed: dict[str, str] = field(default_factory=dict)  # path -> digest, already equal on both sides


def other(side: SideName) -> SideName:
    return "remote" if side == "local" else "local"


def plan(local: Mapping[str, Entry], remote: Mapping[str, Entry], base: Mapping[str, str],
         now: float) -> Plan:
    """The actions that bring both sides to the same files; see the module docstring for the rules."""
    out = Plan()
    taken = set(local) | set(remote)
    for path in sorted(taken | set(base)):
        l, r, b = local.get(path), remote.get(path), base.get(path)
        if l is not None and r is not None:
            both_present(out, path, l, r, b, now, taken)
        elif l is not None or r is not None:
            side: SideName = "local" if l is not None else "remote"
            entry = l if l is not None else r
            assert entry is not None
            if b is not None and entry.digest == b:
                out.actions.append(Delete(path, on=side))  # unchanged here, deleted there: delete here too
            else:
                out.actions.append(Copy(path, to=other(side), digest=entry.digest))
    return out


def both_present(out: Plan, path: str, l: Entry, r: Entry, b: Optional[str], now: float, taken: set[str]) -> None:
    if l.digest == r.digest:
        out.agreed[path] = l.digest
    elif b is not None and l.digest == b:
        out.actions.append(Copy(path, to="local", digest=r.digest))
    elif b is not None and r.digest == b:
        out.actions.append(Copy(path, to="remote", digest=l.digest))
    else:
        winner: SideName = "remote" if r.mtime > l.mtime else "local"  # a tie keeps the local copy at the path
        keep_as = conflict_name(path, now, taken)
        taken.add(keep_as)
        out.actions.append(Conflict(path, winner=winner, keep_as=keep_as))


def conflict_name(path: str, when: float, taken: set[str]) -> str:
    """`src/train.py` -> `src/train.conflict-20261127-153012.py`, unique among `taken`."""
    p = PurePosixPath(path)
    name = p.name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no '.', or a dotfile such as `.env`
        stem, dot, ext = name, "", ""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        candidate = f"{stem}.conflict-{stamp}{suffix}{dot}{ext}"
        full = str(p.parent / candidate) if str(p.parent) != "." else candidate
        if full not in taken:
            return full
    raise ValueError(f"no free conflict name for {path}")  # 999 conflicts of one file in one second
