"""The bookkeeping of `sub verify`'s results, clause by clause.

The clauses themselves (ids, titles, groups for `--skip`, what each needs, the
fix an image author should make, the sentence of the written contract it rests
on) are the contract's catalogue, `substratus.contract.CLAUSES`: the control
plane's ContractViolation names the same ids. `Checklist` records outcomes in
order and decides, without running anything, whether a clause must be
skipped. The parts that run containers live in `checks_*` and `runner`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union

from substratus.contract import GROUPS, Clause, clauses_for

__all__ = ["GROUPS", "Checklist", "Clause", "Outcome", "Result", "Skipped", "Status", "clauses_for"]


class Status(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"   # a clause the written contract states is broken
    WARN = "WARN"   # a check beyond the written contract found a problem (FAIL with --strict)
    SKIP = "SKIP"


@dataclass
class Outcome:
    """What one check found: pass/fail, what was run and seen, and optionally a specific fix."""

    ok: bool
    evidence: str
    fix: str = ""
    log_tail: str = ""


@dataclass
class Skipped:
    """A check that found it has nothing to check (no /openapi.json, a tool not installed...)."""

    reason: str


@dataclass
class Result:
    clause: Clause
    status: Status
    evidence: str
    fix: str = ""
    log_tail: str = ""
    seconds: float = 0.0


@dataclass
class Checklist:
    """Results in clause order; decides skips from --skip and from earlier results."""

    kind: str
    skip_groups: frozenset[str] = frozenset()
    waived: frozenset[str] = frozenset()  # needs that count as met even when skipped (--image: "dockerfile")
    results: dict[str, Result] = field(default_factory=dict)
    strict: bool = False  # --strict: a broken check beyond the written contract is a FAIL too

    def __post_init__(self) -> None:
        self.clauses = {c.id: c for c in clauses_for(self.kind)}

    def skip_reason(self, clause_id: str) -> Optional[str]:
        """Why `clause_id` must not run, or None when it should."""
        clause = self.clauses[clause_id]
        if clause.group in self.skip_groups:
            return f"skipped with --skip {clause.group}"
        for need in clause.needs:
            if need in self.waived:
                continue
            got = self.results.get(need)
            if got is None:
                return f"needs {need!r}, which was not checked"
            if got.status not in (Status.PASS, Status.WARN):
                return f"needs {need!r} ({self.clauses[need].title}), which is {got.status.value}"
        return None

    def record(self, clause_id: str, outcome: Union[Outcome, Skipped], seconds: float = 0.0) -> Result:
        if isinstance(outcome, Skipped):
            return self.skip(clause_id, outcome.reason)
        clause = self.clauses[clause_id]
        status = Status.PASS if outcome.ok else Status.FAIL if clause.written or self.strict else Status.WARN
        fix = "" if outcome.ok else (outcome.fix or clause.fix)
        result = Result(clause, status, outcome.evidence, fix, "" if outcome.ok else outcome.log_tail, seconds)
        self.results[clause_id] = result
        return result

    def skip(self, clause_id: str, reason: str) -> Result:
        result = Result(self.clauses[clause_id], Status.SKIP, reason)
        self.results[clause_id] = result
        return result

    def finish(self, reason: str = "not reached") -> None:
        """Mark every clause without a result as skipped (after an interruption, say)."""
        for cid in self.clauses:
            if cid not in self.results:
                self.skip(cid, reason)

    def ordered(self) -> list[Result]:
        return [self.results[cid] for cid in self.clauses if cid in self.results]

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.results.values())

    @property
    def warned(self) -> bool:
        return any(r.status is Status.WARN for r in self.results.values())
