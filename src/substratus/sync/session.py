"""`Syncer`: one round of two-way sync between a local and a remote `Side`.

A round scans both sides, asks the pure planner what to do, and carries the
plan out in batches (one read and one write per side for all copies), so a
container side costs a handful of `exec`s per round however many files
changed. `base` — what both sides agreed on — only ever records what was
really copied or found equal; a write skipped because the file changed
meanwhile leaves `base` as it was, and the next round sees both changes.
A scan that fails skips the round: a side that could not be listed is never
taken for a side whose files were deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from substratus.sync.decide import Conflict, Copy, Delete, Entry, SideName, plan
from substratus.sync.sides import FileData, ScanError, Side


@dataclass
class Report:
    """What one round did, as lines for people ("↓ src/x.py"), and whether it could run at all."""

    lines: list[str] = field(default_factory=list)
    copied: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: list[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def changed(self) -> bool:
        return bool(self.copied or self.deleted or self.conflicts)


class Syncer:
    def __init__(self, local: Side, remote: Side, *, clock: Callable[[], float] = time.time) -> None:
        self.local, self.remote, self.clock = local, remote, clock
        self.base: dict[str, str] = {}

    def reset(self) -> None:
        """Forget the last agreement (the remote side was replaced): the next round only adds files."""
        self.base = {}

    def side(self, name: SideName) -> Side:
        return self.local if name == "local" else self.remote

    def round(self) -> Report:
        report = Report()
        try:
            listings = {"local": self.local.scan(), "remote": self.remote.scan()}
        except ScanError as err:
            report.error = str(err)
            return report
        p = plan(listings["local"], listings["remote"], self.base, self.clock())
        # Agreed paths, plus the old agreement of every path acted on: kept where an action does not complete.
        new_base = {**{a.path: self.base[a.path] for a in p.actions if a.path in self.base}, **p.agreed}
        try:
            self._copy([a for a in p.actions if isinstance(a, Copy)],
                       [a for a in p.actions if isinstance(a, Conflict)], listings, new_base, report)
            self._delete([a for a in p.actions if isinstance(a, Delete)], listings, new_base, report)
        except ScanError as err:  # the remote went away mid-round: what completed is recorded
            report.error = str(err)
        self.base = new_base
        return report

    def _copy(self, copies: list[Copy], conflicts: list[Conflict], listings: dict[str, dict[str, Entry]],
              base: dict[str, str], report: Report) -> None:
        """All copies and conflicts: read each side once, then write each side once."""
        wanted: dict[SideName, set[str]] = {"local": set(), "remote": set()}
        for c in copies:
            wanted["remote" if c.to == "local" else "local"].add(c.path)
        for k in conflicts:
            wanted["local"].add(k.path)
            wanted["remote"].add(k.path)
        data = {s: self.side(s).read(sorted(wanted[s])) if wanted[s] else {} for s in ("local", "remote")}
        writes: dict[SideName, dict[str, FileData]] = {"local": {}, "remote": {}}
        outcome: list[tuple[SideName, str, str, str]] = []  # (side written, path, digest, line)
        for c in copies:
            src = "remote" if c.to == "local" else "local"
            if c.path in data[src]:
                writes[c.to][c.path] = data[src][c.path]
                outcome.append((c.to, c.path, data[src][c.path].digest, f"{'↓' if c.to == 'local' else '↑'} {c.path}"))
        for k in conflicts:
            self._plan_conflict(k, data, writes, outcome)
        skipped = {s: set(self.side(s).write(writes[s], {p: listings[s].get(p) for p in writes[s]}))
                   for s in ("local", "remote") if writes[s]}
        self._record(outcome, skipped, base, report)

    def _plan_conflict(self, k: Conflict, data: dict[str, dict[str, FileData]],
                       writes: dict[SideName, dict[str, FileData]], outcome: list[tuple[SideName, str, str, str]]
                       ) -> None:
        loser: SideName = "remote" if k.winner == "local" else "local"
        win, lose = data[k.winner].get(k.path), data[loser].get(k.path)
        if win is None or lose is None:
            return  # one vanished since the scan: the next round decides again
        where = {"local": self.local.label, "remote": self.remote.label}
        line = (f"! {k.path}: changed in both; kept the newer ({where[k.winner]}'s) and {where[loser]}'s copy as "
                f"{k.keep_as}")
        writes[loser][k.path] = win
        writes["local"][k.keep_as] = lose
        writes["remote"][k.keep_as] = lose
        outcome += [(loser, k.path, win.digest, line), ("local", k.keep_as, lose.digest, ""),
                    ("remote", k.keep_as, lose.digest, "")]

    def _record(self, outcome: list[tuple[SideName, str, str, str]], skipped: dict[str, set[str]],
                base: dict[str, str], report: Report) -> None:
        """A path is agreed (in `base`) once every write of it this round has landed."""
        landed: dict[str, list[bool]] = {}
        for side, path, _, line in outcome:
            ok = path not in skipped.get(side, set())
            landed.setdefault(path, []).append(ok)
            if not ok:
                report.skipped.append(path)
            elif line:
                report.lines.append(line)
                report.conflicts += line.startswith("!")
                report.copied += not line.startswith("!")
        for _, path, digest, _ in outcome:
            if all(landed[path]):
                base[path] = digest

    def _delete(self, deletes: list[Delete], listings: dict[str, dict[str, Entry]], base: dict[str, str],
                report: Report) -> None:
        for side in ("local", "remote"):
            paths = [d.path for d in deletes if d.on == side]
            if not paths:
                continue
            skipped = set(self.side(side).delete(paths, {p: listings[side].get(p) for p in paths}))
            report.skipped += sorted(skipped)
            for p in paths:
                if p not in skipped:
                    base.pop(p, None)
                    report.deleted += 1
                    there = self.remote.label if side == "local" else self.local.label
                    report.lines.append(f"✗ {p} (deleted in {there})")
