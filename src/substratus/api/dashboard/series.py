"""The progress series of a load or training run, for the dashboard's loss chart.

`status.progress` holds only the latest point; the chart needs them all. They
are in the run's `logs/progress.jsonl`, which the job (untrusted code in a
container) writes through a bind mount. So the file is read defensively:
every path component is opened with O_NOFOLLOW relative to its parent (a link
planted by the job is never followed), only a regular file is read, only its
last MAX_BYTES, and a line that does not parse is counted and skipped, never
fatal (the parser is `resources.progress`). Long series are thinned to
MAX_POINTS, always keeping the first and the latest point.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from substratus.resources import progress

MAX_BYTES = 1024 * 1024
MAX_POINTS = 2000
RUN_NAME = re.compile(r"^[0-9a-f]{16}$")   # run directories are the first 16 hex digits of the run key
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


@dataclass
class Series:
    phase: str
    run: Optional[str] = None
    runs: list[str] = field(default_factory=list)      # newest first
    points: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0                                    # lines that were not usable progress
    truncated: bool = False                             # only the file's tail was read
    thinned: bool = False                               # points were dropped to stay under MAX_POINTS

    def wire(self) -> dict[str, Any]:
        names = sorted({k for p in self.points for k in p} - {"step", "total_steps", "time"})
        return {"phase": self.phase, "run": self.run, "runs": self.runs, "points": self.points,
                "metrics": names, "skipped": self.skipped, "truncated": self.truncated, "thinned": self.thinned}


def phase_of(kind: str) -> str:
    return "load" if kind == "Dataset" else "train"


def runs_with_progress(object_dir: Path) -> list[str]:
    """Run directories holding a progress file, newest first (by the file's modification time)."""
    found: list[tuple[float, str]] = []
    try:
        entries = list(os.scandir(object_dir))
    except OSError:
        return []
    for entry in entries:
        if not (RUN_NAME.match(entry.name) and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            st = os.stat(Path(entry.path, "logs", progress.PROGRESS_FILE), follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((st.st_mtime, entry.name))
    return [name for _, name in sorted(found, reverse=True)]


def read_tail_nofollow(base: Path, parts: tuple[str, ...], limit: int) -> tuple[str, bool]:
    """The last `limit` bytes of base/parts..., following no link below `base`; ('', False) if absent."""
    fds: list[int] = []
    try:
        fds.append(os.open(base, _DIR_FLAGS))
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
        st = os.fstat(fds[-1])
        if not stat.S_ISREG(st.st_mode):
            return "", False
        start = max(0, st.st_size - limit)
        data = os.pread(fds[-1], limit, start)
    except OSError:
        return "", False
    finally:
        for fd in fds:
            os.close(fd)
    text = data.decode("utf-8", errors="replace")
    if start:
        text = text.split("\n", 1)[1] if "\n" in text else ""   # drop the partial first line
    return text, start > 0


def parse_series(text: str) -> tuple[list[dict[str, Any]], int]:
    """Usable points (wire form) and the number of non-blank lines skipped."""
    points: list[dict[str, Any]] = []
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        point = progress.parse_line(line)
        if point is None:
            skipped += 1
        else:
            points.append(point.wire())
    return points, skipped


def thin(points: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """At most `limit` points, evenly spaced, first and last always kept."""
    if len(points) <= limit or limit < 2:
        return points[:limit] if limit < 2 else points
    stride = (len(points) - 1) / (limit - 1)
    return [points[round(i * stride)] for i in range(limit)]


def load_series(object_dir: Path, kind: str, run: Optional[str] = None) -> Series:
    """The series of `run` (default: the newest run with a progress file) of one object."""
    series = Series(phase=phase_of(kind), runs=runs_with_progress(object_dir))
    if run is not None and run not in series.runs:
        return series
    series.run = run or (series.runs[0] if series.runs else None)
    if series.run is None:
        return series
    text, series.truncated = read_tail_nofollow(object_dir, (series.run, "logs", progress.PROGRESS_FILE),
                                                MAX_BYTES)
    points, series.skipped = parse_series(text)
    series.points = thin(points)
    series.thinned = len(series.points) < len(points)
    return series
