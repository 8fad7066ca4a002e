"""The log tail an object's page shows and refreshes while it is open.

Bounded by construction: the last FILE_TAIL bytes of each log file (read
with the same no-link-following reader as the progress series: job logs are
written by untrusted code through a bind mount) and the last `lines` lines of
each of the object's containers. `sub logs` is the place for whole logs.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from substratus.api.dashboard.series import read_tail_nofollow
from substratus.local.service import ControlPlane
from substratus.local.store import Record
from substratus.resources import progress

FILE_TAIL = 64 * 1024
MAX_LINES = 1000
MAX_LINE = 2000


def file_tail(object_dir: Path, path: Path, lines: int) -> list[str]:
    try:
        parts = path.relative_to(object_dir).parts
    except ValueError:
        return []
    text, _ = read_tail_nofollow(object_dir, parts, FILE_TAIL)
    return [ln[:MAX_LINE] for ln in text.splitlines()[-lines:]]


def tail(cp: ControlPlane, rec: Record, lines: int = 200) -> list[str]:
    """The last `lines` lines across the object's log files and containers, each source headed."""
    lines = max(1, min(lines, MAX_LINES))
    out: deque[str] = deque(maxlen=lines)
    object_dir = cp.layout.object_dir(rec.kind, rec.namespace, rec.name)
    for path in cp.log_files(rec):
        if path.name == progress.PROGRESS_FILE:
            continue  # drawn as the chart
        body = file_tail(object_dir, path, lines)
        if body:
            out.append(f"==> {path.relative_to(object_dir)} <==")
            out.extend(body)
    for c in cp.containers(rec.kind, rec.namespace, rec.name):
        out.append(f"==> container {c.name} ({c.status}) <==")
        try:
            out.extend(ln[:MAX_LINE] for ln in cp.runtime.logs(c.name, tail=lines))
        except Exception as err:  # noqa: BLE001 - a gone container must not break the page
            out.append(f"(could not read the container's log: {err})")
    return list(out)
