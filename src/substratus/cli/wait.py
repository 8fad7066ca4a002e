"""`sub apply --wait`: follow the watch stream until all are ready, one fails, or time runs out.

`verdict` is pure (unit-tested); `wait_for` folds watch events into the latest
view of each object and prints one line per change of reason, as it happens
(no polling: the control plane pushes every change).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from substratus.cli.output import ready_condition
from substratus.resources.reasons import FAILED

FAILED_REASONS = frozenset(r.value for r in FAILED)
Key = tuple[str, str, str]


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


def key_of(o: dict[str, Any]) -> Key:
    return (o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"])


def wait_for(events: Iterable[dict[str, Any]], keys: set[Key], timeout: float, *, out: TextIO = sys.stderr,
             clock: Callable[[], float] = time.monotonic) -> Verdict:
    """Fold watch events for `keys` until a verdict; a stream that ends early means the timeout passed."""
    start = clock()
    seen: dict[Key, dict[str, Any]] = {}
    last: dict[Key, tuple[str, str]] = {}
    tty = out.isatty()
    synced = False
    for event in events:
        if event.get("type") == "ERROR":
            break
        if event.get("type") == "BOOKMARK":
            synced = True
        obj = event.get("object")
        if isinstance(obj, dict) and key_of(obj) in keys:
            if event["type"] == "DELETED":
                seen.pop(key_of(obj), None)
            else:
                seen[key_of(obj)] = obj
                report_change(obj, last, clock() - start, tty, out)
        if synced and len(seen) == len(keys):
            v = verdict(list(seen.values()))
            if v.done:
                return v
        if clock() - start >= timeout:
            break
    return Verdict(done=False, failed=[], pending=[o for o in seen.values() if not (current(o) and settled(o))])


def report_change(o: dict[str, Any], last: dict[Key, tuple[str, str]], elapsed: float, tty: bool,
                  out: TextIO) -> None:
    cond = ready_condition(o)
    state = ("ready" if settled(o) and current(o) else cond.get("reason", "Pending"),
             (cond.get("message") or "").splitlines()[0] if cond.get("message") else "")
    if last.get(key_of(o)) == state:
        return
    last[key_of(o)] = state
    mark = "✓" if state[0] == "ready" and tty else "-"
    print(f"[{elapsed:6.1f}s] {mark} {ref(o):<36} {state[0]:<16} {state[1]}"[:200], file=out, flush=True)
