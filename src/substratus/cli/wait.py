"""`sub apply --wait`: poll objects until all are ready, one fails, or time runs out.

`verdict` is pure (unit-tested); `wait_for` does the polling with an
injectable clock and sleep.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TextIO

from substratus.cli.output import ready_condition

# Mirrors controlplane.plan.FAILED_REASONS: reasons after which waiting will not help.
FAILED_REASONS = frozenset({"SourceFailed", "BuildFailed", "ContractViolation", "LoadFailed", "TrainFailed",
                            "CrashLoopBackOff", "ServeFailed", "NotebookFailed", "DependencyFailed"})


@dataclass
class Verdict:
    done: bool
    failed: list[dict[str, Any]]
    pending: list[dict[str, Any]]


def settled(obj: dict[str, Any]) -> bool:
    st = obj.get("status", {})
    return bool(st.get("ready")) or ready_condition(obj).get("reason") == "Suspended"


def current(obj: dict[str, Any]) -> bool:
    """The status speaks of the spec as it is now (not of an earlier generation)."""
    return bool(obj.get("status", {}).get("observedGeneration", 0) == obj["metadata"].get("generation", 0))


def verdict(objs: list[dict[str, Any]]) -> Verdict:
    failed = [o for o in objs if current(o) and ready_condition(o).get("reason") in FAILED_REASONS]
    pending = [o for o in objs if not (current(o) and settled(o))]
    return Verdict(done=not pending or bool(failed), failed=failed, pending=pending)


def ref(o: dict[str, Any]) -> str:
    return f"{o['kind'].lower()}/{o['metadata']['name']}"


def wait_for(fetch: Callable[[], list[dict[str, Any]]], timeout: float, *, out: TextIO = sys.stderr,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
             interval: float = 1.0) -> Verdict:
    start = clock()
    last: dict[str, tuple[str, str]] = {}
    tty = out.isatty()
    while True:
        objs = fetch()
        for o in objs:
            cond = ready_condition(o)
            state = ("ready" if settled(o) else cond.get("reason", "Pending"),
                     (cond.get("message") or "").splitlines()[0] if cond.get("message") else "")
            if last.get(ref(o)) != state:
                last[ref(o)] = state
                elapsed = clock() - start
                mark = "✓" if state[0] == "ready" and tty else "-"
                print(f"[{elapsed:6.1f}s] {mark} {ref(o):<36} {state[0]:<16} {state[1]}"[:200], file=out, flush=True)
        v = verdict(objs)
        if v.done:
            return v
        if clock() - start >= timeout:
            return Verdict(done=False, failed=[], pending=v.pending)
        sleep(interval)
