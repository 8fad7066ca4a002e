"""`sub apply --wait`: follow the watch stream until all are ready, one fails, or time runs out.

`verdict` is pure (unit-tested); `wait_for` folds watch events into the latest
view of each object and hands each change to a view, as it happens (no
polling: the control plane pushes every change). `PlainView` prints one line
per change of reason (logs, pipes, CI); on a terminal `cli.progress.RichView`
draws live progress bars from `status.progress` instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Protocol, TextIO

from substratus.cli.output import ready_condition
from substratus.resources.objectkey import ObjectKey
from substratus.resources.reasons import FAILED
from substratus.resources.references import references

FAILED_REASONS = frozenset(r.value for r in FAILED)


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
    """Done when all are settled, or one failed. A `DependencyFailed` counts only when an object it
    refers to (among those waited for) failed too: after a retry of the failed object, its dependents
    still say so until they are looked at again."""
    by_key = {key_of(o): o for o in objs}

    def failed_itself(o: dict[str, Any]) -> bool:
        if not current(o) or ready_condition(o).get("reason") not in FAILED_REASONS:
            return False
        if ready_condition(o).get("reason") != "DependencyFailed":
            return True
        deps = [by_key[k] for k in references(o["kind"], o["metadata"].get("namespace", "default"),
                                              o.get("spec") or {}) if k in by_key]
        return not deps or any(failed_itself(d) for d in deps)

    failed = [o for o in objs if failed_itself(o)]
    pending = [o for o in objs if not (current(o) and settled(o))]
    return Verdict(done=not pending or bool(failed), failed=failed, pending=pending)


def ref(o: dict[str, Any]) -> str:
    return f"{o['kind'].lower()}/{o['metadata']['name']}"


def key_of(o: dict[str, Any]) -> ObjectKey:
    return ObjectKey(o["kind"], o["metadata"].get("namespace", "default"), o["metadata"]["name"])


class View(Protocol):
    """Shows the objects being waited for; `update` gets each new version of one."""

    def update(self, obj: dict[str, Any], elapsed: float) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """One line per change of an object's reason or message."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.last: dict[ObjectKey, tuple[str, str]] = {}

    def update(self, obj: dict[str, Any], elapsed: float) -> None:
        report_change(obj, self.last, elapsed, self.out.isatty(), self.out)

    def close(self) -> None:
        return None


def wait_for(events: Iterable[dict[str, Any]], keys: set[ObjectKey], timeout: float, *, out: TextIO = sys.stderr,
             clock: Callable[[], float] = time.monotonic, view: Optional[View] = None) -> Verdict:
    """Fold watch events for `keys` until a verdict; a stream that ends early means the timeout passed."""
    shown = view if view is not None else PlainView(out)
    try:
        return _fold(events, keys, timeout, clock, shown)
    finally:
        shown.close()


def _fold(events: Iterable[dict[str, Any]], keys: set[ObjectKey], timeout: float, clock: Callable[[], float],
          view: View) -> Verdict:
    start = clock()
    seen: dict[ObjectKey, dict[str, Any]] = {}
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
                view.update(obj, clock() - start)
        if synced and len(seen) == len(keys):
            v = verdict(list(seen.values()))
            if v.done:
                return v
        if clock() - start >= timeout:
            break
    return Verdict(done=False, failed=[], pending=[o for o in seen.values() if not (current(o) and settled(o))])


def report_change(o: dict[str, Any], last: dict[ObjectKey, tuple[str, str]], elapsed: float, tty: bool,
                  out: TextIO) -> None:
    cond = ready_condition(o)
    state = ("ready" if settled(o) and current(o) else cond.get("reason", "Pending"),
             (cond.get("message") or "").splitlines()[0] if cond.get("message") else "")
    if last.get(key_of(o)) == state:
        return
    last[key_of(o)] = state
    mark = "✓" if state[0] == "ready" and tty else "-"
    print(f"[{elapsed:6.1f}s] {mark} {ref(o):<36} {state[0]:<16} {state[1]}"[:200], file=out, flush=True)
