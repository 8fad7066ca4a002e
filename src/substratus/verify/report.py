"""Turning a finished checklist into what `sub verify` prints, and its exit code.

Pure: text for people (a checklist with evidence, log tails and fixes) and a
plain dict for `-o json`; no I/O, so unit tests compare strings directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from substratus.verify.clauses import Checklist, Result, Status

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

_COLOURS = {Status.PASS: "32", Status.FAIL: "31", Status.WARN: "35", Status.SKIP: "33"}


@dataclass
class Report:
    kind: str
    source: str  # what was verified, for people: a directory, a git URL, an image
    image: str   # the image the runtime checks used ("" when none was built)
    checklist: Checklist
    interrupted: bool = False


def exit_code(report: Report) -> int:
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.checklist.failed else EXIT_OK


def counts(report: Report) -> dict[str, int]:
    results = report.checklist.ordered()
    return {s.value.lower(): sum(1 for r in results if r.status is s) for s in Status}


def _badge(status: Status, color: bool) -> str:
    text = f"{status.value:<4}"
    return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if color else text


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()] or [prefix.rstrip()]


def render_result(result: Result, *, color: bool = False, id_width: int = 16) -> list[str]:
    lines = [f"  {_badge(result.status, color)}  {result.clause.id:<{id_width}} {result.clause.title}"]
    pad = " " * 8
    if result.evidence:
        lines += _indent(result.evidence, pad)
    if result.log_tail:
        lines.append(pad + "log tail:")
        lines += _indent(result.log_tail, pad + "  | ")
    if result.fix:
        lines.append(pad + "fix: " + result.fix)
    if result.status is Status.FAIL and result.clause.written:
        lines.append(pad + "contract: " + result.clause.contract)
    elif result.status in (Status.FAIL, Status.WARN):
        lines.append(pad + "beyond the written contract: a WARN unless --strict")
    return lines


def render_text(report: Report, *, color: bool = False) -> str:
    results = report.checklist.ordered()
    width = max((len(r.clause.id) for r in results), default=10) + 1
    head = f"sub verify {report.kind.lower()}: {report.source}"
    if report.image:
        head += f"\n  image: {report.image}"
    lines = [head, ""]
    for r in results:
        lines += render_result(r, color=color, id_width=width)
    c = counts(report)
    verdict = "INTERRUPTED" if report.interrupted else ("FAILED" if c["fail"] else "OK")
    lines += ["", f"{verdict}: {c['pass']} passed, {c['fail']} failed, {c['warn']} warnings, {c['skip']} skipped"]
    return "\n".join(lines) + "\n"


def to_dict(report: Report) -> dict[str, Any]:
    results = report.checklist.ordered()
    return {
        "kind": report.kind,
        "source": report.source,
        "image": report.image,
        "ok": exit_code(report) == EXIT_OK,
        "interrupted": report.interrupted,
        "strict": report.checklist.strict,
        "summary": {"passed": counts(report)["pass"], "failed": counts(report)["fail"],
                    "warnings": counts(report)["warn"], "skipped": counts(report)["skip"]},
        "clauses": [
            {"id": r.clause.id, "title": r.clause.title, "group": r.clause.group, "status": r.status.value,
             "contract": r.clause.contract, "evidence": r.evidence, "fix": r.fix, "logTail": r.log_tail,
             "seconds": round(r.seconds, 2)}
            for r in results
        ],
    }
